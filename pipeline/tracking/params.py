"""What a run records as parameters: the flattened configuration with secrets redacted, and
the versions of the libraries it ran on."""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from pipeline.config import flatten

SECRET_WORDS = ("password", "passwd", "secret", "token", "key", "credential")
# keys of our own typed configuration that contain one of those words but hold no secret
NOT_SECRETS = frozenset({"text.url_token", "text.email_token", "text.mention_token",
                         "text.token_pattern"})
REDACTED = "<redacted>"
_URI_PASSWORD = re.compile(r"(?<=://)([^/@:\s]+):[^/@\s]+@")
# library -> the distributions that provide it (CPU and GPU builds of TensorFlow differ)
LIBRARIES = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "horovod": ("horovod",),
             "pyspark": ("pyspark",), "petastorm": ("petastorm",), "mlflow": ("mlflow",)}


def loggable_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Flattened parameters as MLflow stores them: secrets (by key, and passwords inside URIs)
    replaced by ``<redacted>``, values cut to MLflow's 6,000-character limit."""
    flat = {}
    for key, value in flatten(params).items():
        secret = key not in NOT_SECRETS and any(word in key.lower() for word in SECRET_WORDS)
        flat[key] = (REDACTED if secret else _URI_PASSWORD.sub(rf"\1:{REDACTED}@", value))[:6000]
    return flat


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a run depends on (without importing them)."""
    versions = {}
    for name, distributions in LIBRARIES.items():
        versions[name] = "not installed"
        for distribution in distributions:
            try:
                versions[name] = metadata.version(distribution)
                break
            except metadata.PackageNotFoundError:
                continue
    return versions
