"""The tracking store: resolve its URIs, check it answers, find or create the experiment."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import MlflowConfig
from pipeline.datasets.storage import to_uri
from pipeline.errors import PipelineError


class TrackingStoreError(PipelineError, RuntimeError):
    """The MLflow tracking store cannot be used."""


def absolute_tracking_uri(uri: str) -> str:
    """``sqlite:///relative.db`` -> an absolute path, so that every process opens the same file."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


def check_store(cfg: MlflowConfig) -> str:
    """Return the experiment id, creating the experiment; fail clearly if the store is unusable."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = absolute_tracking_uri(cfg.tracking_uri)
    client = MlflowClient(tracking_uri=uri)
    try:
        experiment = client.get_experiment_by_name(cfg.experiment)
        if experiment is not None:
            return experiment.experiment_id
        return client.create_experiment(cfg.experiment,
                                        artifact_location=to_uri(cfg.artifact_root))
    except (MlflowException, OSError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrackingStoreError(
            f"MLflow tracking store {uri} is not usable: {first_line}") from None
