"""One MLflow store, resolved once from the configuration: its URI, experiment and client.

Every module that talks to MLflow takes a ``Tracker``; nothing else resolves the tracking URI
or sets it globally. It pickles as its three strings, so a Horovod worker or a Spark task gets
the same store and builds its own client.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pipeline.config import MlflowConfig
from pipeline.errors import PipelineError, first_line
from pipeline.storage import to_uri

_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")  # MLflow sets them for children
REMOTE_SCHEMES = ("http://", "https://", "databricks")  # tracking servers


class TrackingStoreError(PipelineError, RuntimeError):
    """The MLflow tracking store cannot be used."""


def absolute_tracking_uri(uri: str) -> str:
    """``sqlite:///relative.db`` -> an absolute path, so that every process opens the same file."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


@dataclass(frozen=True)
class Tracker:
    """The store (``uri``, also the registry), the experiment runs go to, its artifact root."""

    uri: str
    experiment: str
    artifact_root: str

    @classmethod
    def from_config(cls, cfg: MlflowConfig) -> Tracker:
        return cls(absolute_tracking_uri(cfg.tracking_uri), cfg.experiment, cfg.artifact_root)

    @cached_property
    def client(self):
        """An ``MlflowClient`` on this store and its registry."""
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    @property
    def artifact_location(self) -> str | None:
        """Where a new experiment keeps its artifacts. Against a tracking server, a local
        ``artifact_root`` (the default ``./mlartifacts``) would strand them on this machine:
        the server's own store (``--artifacts-destination``, proxied) is used instead; a
        shared location (``s3://``, ``hdfs://``) is used as given."""
        location = to_uri(self.artifact_root)
        if self.uri.startswith(REMOTE_SCHEMES) and location.startswith("file:"):
            return None
        return location

    @cached_property
    def experiment_id(self) -> str:
        """The experiment's id, created on first use; fails clearly if the store is unusable."""
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.get_experiment_by_name(self.experiment)
            if found is not None:
                return found.experiment_id
            return self.client.create_experiment(self.experiment,
                                                 artifact_location=self.artifact_location)
        except (MlflowException, OSError) as exc:
            raise TrackingStoreError(
                f"MLflow tracking store {self.uri} is not usable: {first_line(exc)}") from None

    @contextmanager
    def active(self) -> Iterator[None]:
        """This store as MLflow's global one, for the fluent API (log, register, load models),
        and afterwards exactly what was there before: MLflow's public getters return resolved
        defaults, so its module state and variables are saved and put back (one place)."""
        import mlflow
        from mlflow.tracking._model_registry import utils as registry_state
        from mlflow.tracking._tracking_service import utils as tracking_state

        saved = (tracking_state._tracking_uri, registry_state._registry_uri,
                 {key: os.environ.get(key) for key in _URI_VARIABLES})
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(saved[0])
            registry_state._registry_uri = saved[1]
            for key, value in saved[2].items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def __getstate__(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in ("uri", "experiment", "artifact_root")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
