"""Run lifecycle on the driver: one run per training job, created before any compute."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.datasets.manifest import Manifest


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested configuration -> ``{"train.epochs": "8", ...}`` for MLflow parameters."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def create_training_run(tracking_uri: str, experiment_id: str, run_name: str,
                        params: Mapping[str, Any], manifest: Manifest, dataset_url: str) -> str:
    """Create the run with its parameters, dataset tags and the manifest as an artifact."""
    from mlflow.entities import Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.create_run(experiment_id, run_name=run_name, tags={
        "dataset.url": dataset_url,
        "dataset.fingerprint": manifest.fingerprint,
    })
    run_id = run.info.run_id
    flat = flatten(params)
    items = [Param(k, v[:6000]) for k, v in sorted(flat.items())]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start:start + 100],
                         tags=[RunTag("mlflow.source.type", "JOB")] if start == 0 else [])
    client.log_text(run_id, manifest.to_json(), "dataset/manifest.json")
    return run_id


def end_run(tracking_uri: str, run_id: str, ok: bool) -> None:
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=tracking_uri).set_terminated(run_id, "FINISHED" if ok else "FAILED")
