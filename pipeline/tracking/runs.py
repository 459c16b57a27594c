"""Run lifecycle on the driver: one run per training job, created before any compute."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.datasets.manifest import Manifest
from pipeline.errors import PipelineError


class RunNotFoundError(PipelineError, LookupError):
    """No MLflow run has the given id."""


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


def set_tag(tracking_uri: str, run_id: str, key: str, value: str) -> None:
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=tracking_uri).set_tag(run_id, key, value)


def differing_params(tracking_uri: str, run_id: str, params: Mapping[str, Any]) -> list[str]:
    """Keys whose logged value in ``run_id`` differs from ``params`` (flattened)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        logged = MlflowClient(tracking_uri=tracking_uri).get_run(run_id).data.params
    except MlflowException:
        raise RunNotFoundError(f"no MLflow run {run_id} in the tracking store") from None
    flat = {k: v[:6000] for k, v in flatten(params).items()}
    return sorted(k for k in flat.keys() | logged.keys() if flat.get(k) != logged.get(k))


def latest_unfinished_run(tracking_uri: str, experiment_id: str, fingerprint: str,
                          model: str) -> str | None:
    """The newest run of ``model`` on this dataset that did not finish (failed or killed)."""
    from mlflow.tracking import MlflowClient

    found = MlflowClient(tracking_uri=tracking_uri).search_runs(
        [experiment_id],
        filter_string=(f"tags.`dataset.fingerprint` = '{fingerprint}' "
                       f"and params.model = '{model}' and attributes.status != 'FINISHED'"),
        order_by=["attributes.start_time DESC"], max_results=1)
    return found[0].info.run_id if found else None


def reopen_run(tracking_uri: str, run_id: str, epoch: int, logs: Mapping[str, float]) -> None:
    """Mark a run RUNNING again; log the checkpointed epoch's metrics if the crash came between
    the checkpoint and the MLflow write, so the history has neither gap nor repeat."""
    import time

    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    client.update_run(run_id, status="RUNNING")
    logged_steps = {m.step for m in client.get_metric_history(run_id, "loss")}
    if logs and epoch not in logged_steps:
        now_ms = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now_ms, epoch)
                                          for k, v in sorted(logs.items())])
