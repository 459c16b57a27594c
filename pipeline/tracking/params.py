"""What a run records as parameters: the flattened configuration with secrets redacted, and
the versions of the libraries it ran on."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata
from typing import Any

from pipeline.config import flatten
from pipeline.redaction import REDACTED, redact

__all__ = ["REDACTED", "library_versions", "loggable_params"]

# library -> the distributions that provide it (CPU and GPU builds of TensorFlow differ)
LIBRARIES = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "horovod": ("horovod",),
             "pyspark": ("pyspark",), "petastorm": ("petastorm",), "mlflow": ("mlflow",)}


def loggable_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Flattened parameters as MLflow stores them: secrets (by key, and inside URIs: see
    ``pipeline.redaction``) replaced by ``<redacted>``, values cut to MLflow's 6,000-character
    limit."""
    return {key: redact(value, key)[:6000] for key, value in flatten(params).items()}


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
