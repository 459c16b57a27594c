"""One MLflow store, resolved once from the configuration: its URI, experiment and client.

Every module that talks to MLflow takes a ``Tracker``; nothing else resolves the tracking URI
or sets it globally. It pickles as its three strings, so a Horovod worker or a Spark task gets
the same store and builds its own client.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pipeline.config import MlflowConfig
from pipeline.errors import PipelineError, first_line
from pipeline.storage import to_uri


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

    @cached_property
    def experiment_id(self) -> str:
        """The experiment's id, created on first use; fails clearly if the store is unusable."""
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.get_experiment_by_name(self.experiment)
            if found is not None:
                return found.experiment_id
            return self.client.create_experiment(self.experiment,
                                                 artifact_location=to_uri(self.artifact_root))
        except (MlflowException, OSError) as exc:
            raise TrackingStoreError(
                f"MLflow tracking store {self.uri} is not usable: {first_line(exc)}") from None

    @contextmanager
    def active(self) -> Iterator[None]:
        """This store as MLflow's global one, for the fluent API (log, register, load models),
        restored afterwards."""
        import mlflow

        before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(before[0])
            mlflow.set_registry_uri(before[1])

    def __getstate__(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in ("uri", "experiment", "artifact_root")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
