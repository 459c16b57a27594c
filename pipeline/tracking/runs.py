"""Run lifecycle on the driver: one run per training job, created before any compute, holding
what a reader of the MLflow UI needs: redacted parameters, library versions, dataset lineage."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pipeline.datasets import storage
from pipeline.datasets.manifest import Manifest
from pipeline.errors import PipelineError

SECRET_WORDS = ("password", "passwd", "secret", "token", "key", "credential")
# keys of our own typed configuration that contain one of those words but hold no secret
NOT_SECRETS = frozenset({"text.url_token", "text.email_token", "text.mention_token",
                         "text.token_pattern"})
REDACTED = "<redacted>"
JOB_TAG = "pipeline.job"  # train | evaluate | sweep: what made the run
PARENT_TAG = "mlflow.parentRunId"
_URI_PASSWORD = re.compile(r"(?<=://)([^/@:\s]+):[^/@\s]+@")
# library -> the distributions that provide it (CPU and GPU builds of TensorFlow differ)
LIBRARIES = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "horovod": ("horovod",),
             "pyspark": ("pyspark",), "petastorm": ("petastorm",), "mlflow": ("mlflow",)}


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


def _dataset_input(manifest: Manifest, dataset_url: str, context: str):
    """The dataset version as an MLflow dataset (the UI's Datasets column): source and digest."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    name = f"{manifest.kind}:{dataset_url.rstrip('/').rsplit('/', 1)[-1]}"
    profile = {split: info.rows for split, info in manifest.splits.items()}
    dataset = Dataset(name=name, digest=manifest.fingerprint[:16],
                      source_type=urlparse(dataset_url).scheme or "local",
                      source=json.dumps({"uri": dataset_url}),
                      schema=json.dumps({"fields": manifest.schema}),
                      profile=json.dumps(profile))
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)])


def create_training_run(tracking_uri: str, experiment_id: str, run_name: str,
                        params: Mapping[str, Any], manifest: Manifest, dataset_url: str,
                        parent_run_id: str | None = None) -> str:
    """Create the run: parameters and library versions, dataset lineage, and the version's
    manifest, label map and vocabulary as artifacts."""
    from mlflow.entities import Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    tags = {JOB_TAG: "train", "dataset.url": dataset_url,
            "dataset.fingerprint": manifest.fingerprint}
    if parent_run_id:
        tags[PARENT_TAG] = parent_run_id  # nested under the sweep in the UI
    run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    run_id = run.info.run_id
    flat = loggable_params({**params, "versions": library_versions()})
    items = [Param(k, v) for k, v in sorted(flat.items())]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start:start + 100],
                         tags=[RunTag("mlflow.source.type", "JOB")] if start == 0 else [])
    client.log_inputs(run_id, datasets=[_dataset_input(manifest, dataset_url, "train")])
    client.log_text(run_id, manifest.to_json(), "dataset/manifest.json")
    client.log_dict(run_id, manifest.label_map, "dataset/labels.json")
    if manifest.kind == "text":
        vocabulary = storage.read_text(storage.join(dataset_url, "vocab.txt"))
        client.log_text(run_id, vocabulary, "dataset/vocab.txt")
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
    flat = loggable_params(params)
    return sorted(k for k in flat.keys() | logged.keys()
                  if flat.get(k) != logged.get(k) and not k.startswith("versions."))


def latest_unfinished_run(tracking_uri: str, experiment_id: str, fingerprint: str,
                          model: str) -> str | None:
    """The newest training run of ``model`` on this dataset that failed or was killed (not one
    still RUNNING: that may be a live job; name it with ``--run-id`` after a driver crash)."""
    from mlflow.tracking import MlflowClient

    found = MlflowClient(tracking_uri=tracking_uri).search_runs(
        [experiment_id],
        filter_string=(f"tags.`dataset.fingerprint` = '{fingerprint}' and params.model = "
                       f"'{model}' and tags.`{JOB_TAG}` = 'train' "
                       f"and attributes.status != 'FINISHED'"),
        order_by=["attributes.start_time DESC"], max_results=50)
    standalone = [r for r in found if r.info.status in ("FAILED", "KILLED")
                  and PARENT_TAG not in r.data.tags]  # not live runs, not sweep trials
    return standalone[0].info.run_id if standalone else None


def run_status(tracking_uri: str, run_id: str) -> str:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        return MlflowClient(tracking_uri=tracking_uri).get_run(run_id).info.status
    except MlflowException:
        raise RunNotFoundError(f"no MLflow run {run_id} in the tracking store") from None


def reopen_run(tracking_uri: str, run_id: str, epoch: int, logs: Mapping[str, float]) -> None:
    """Mark a run RUNNING again; log the checkpointed epoch's metrics if the crash came between
    the checkpoint and the MLflow write, so the history has neither gap nor repeat."""

    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    client.update_run(run_id, status="RUNNING")
    logged_steps = {m.step for m in client.get_metric_history(run_id, "loss")}
    if logs and epoch not in logged_steps:
        now_ms = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now_ms, epoch)
                                          for k, v in sorted(logs.items())])


def log_evaluation_run(tracking_uri: str, experiment_id: str, model_uri: str, model_ref,
                       manifest: Manifest, dataset_url: str, split: str, scores,
                       parent_run_id: str | None = None) -> str:
    """A finished run holding one evaluation: metrics, confusion matrix, per-class table."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from pipeline.tracking.reports import log_report

    client = MlflowClient(tracking_uri=tracking_uri)
    tags = {JOB_TAG: "evaluate", "evaluation.model_uri": model_uri, "evaluation.split": split,
            "dataset.url": dataset_url, "dataset.fingerprint": manifest.fingerprint}
    if model_ref is not None:
        tags |= {"model.name": model_ref.name, "model.version": model_ref.version}
    if parent_run_id:
        tags[PARENT_TAG] = parent_run_id
    run = client.create_run(experiment_id, run_name=f"evaluate {model_ref or model_uri} "
                                                    f"on {split}", tags=tags)
    run_id = run.info.run_id
    try:
        client.log_inputs(run_id, datasets=[_dataset_input(manifest, dataset_url, "evaluation")])
        now_ms = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[
            Metric(f"{split}_accuracy", scores.accuracy, now_ms, 0),
            Metric(f"{split}_loss", scores.loss, now_ms, 0),
            Metric(f"{split}_rows", scores.rows, now_ms, 0)])
        log_report(client, run_id, scores.confusion, manifest.labels, split)
    except Exception:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def create_sweep_run(tracking_uri: str, experiment_id: str, spec: Mapping[str, Any],
                     trials: int) -> str:
    """The parent run of a sweep: its method, metric and search space."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.create_run(experiment_id, run_name=f"sweep {spec['method']} x{trials}",
                            tags={JOB_TAG: "sweep"})
    client.log_param(run.info.run_id, "sweep.method", spec["method"])
    client.log_param(run.info.run_id, "sweep.metric", spec["metric"])
    client.log_param(run.info.run_id, "sweep.trials", str(trials))
    client.log_dict(run.info.run_id, dict(spec), "sweep.json")
    return run.info.run_id


def mark_best_trial(tracking_uri: str, parent_run_id: str, best_run_id: str, metric: str,
                    value: float) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    client.set_tag(best_run_id, "sweep.best", "true")
    client.set_tag(parent_run_id, "sweep.best_run_id", best_run_id)
    client.log_metric(parent_run_id, f"best_{metric}", value)


def training_inputs(tracking_uri: str, run_id: str) -> tuple[Manifest, str | None]:
    """(the dataset manifest a training run logged, its vocabulary text or None)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        folder = Path(client.download_artifacts(run_id, "dataset"))
        manifest = Manifest.from_json((folder / "manifest.json").read_text(encoding="utf-8"))
    except (MlflowException, OSError):
        raise RunNotFoundError(f"run {run_id} has no dataset/manifest.json: it was not made "
                               "by pipeline train, so its preprocessing is unknown") from None
    vocab = folder / "vocab.txt"
    return manifest, vocab.read_text(encoding="utf-8") if vocab.exists() else None


def create_retrain_run(tracking_uri: str, experiment_id: str, params: Mapping[str, Any],
                       output_uri: str) -> str:
    """The parent run of one retrain: its configuration; its steps are nested runs."""
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.create_run(experiment_id, run_name=f"retrain {time.strftime('%Y-%m-%d %H:%M')}",
                            tags={JOB_TAG: "retrain", "retrain.output": output_uri})
    items = [Param(k, v) for k, v in sorted(loggable_params(params).items())]
    for start in range(0, len(items), 100):
        client.log_batch(run.info.run_id, params=items[start:start + 100])
    return run.info.run_id


def log_ingest_run(tracking_uri: str, experiment_id: str, parent_run_id: str,
                   manifest: Manifest, dataset_url: str, changes: Mapping[str, int]) -> str:
    """A finished nested run for a dataset version a retrain built: what changed, the counts."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.create_run(experiment_id, run_name=f"ingest {dataset_url.rsplit('/', 1)[-1]}",
                            tags={JOB_TAG: "ingest", PARENT_TAG: parent_run_id,
                                  "dataset.url": dataset_url,
                                  "dataset.fingerprint": manifest.fingerprint})
    now_ms = int(time.time() * 1000)
    counts = {f"inputs_{name}": n for name, n in changes.items()}
    counts |= {"discovered": manifest.discovered, "quarantined": manifest.quarantined}
    counts |= {f"{split}_rows": info.rows for split, info in manifest.splits.items()}
    client.log_batch(run.info.run_id, metrics=[Metric(k, v, now_ms, 0)
                                               for k, v in sorted(counts.items())])
    client.log_inputs(run.info.run_id, datasets=[_dataset_input(manifest, dataset_url, "ingest")])
    client.log_text(run.info.run_id, manifest.to_json(), "dataset/manifest.json")
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def fail_abandoned_retrains(tracking_uri: str, experiment_id: str, output_uri: str,
                            recovered_by: str) -> list[str]:
    """Mark the RUNNING retrain runs of ``output_uri`` and their RUNNING steps FAILED: only
    the lock holder calls this, so their processes are gone."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    abandoned = client.search_runs(
        [experiment_id], f"tags.`{JOB_TAG}` = 'retrain' and tags.`retrain.output` = "
                         f"'{output_uri}' and attributes.status = 'RUNNING'")
    ids = []
    for parent in abandoned:
        children = client.search_runs([experiment_id], f"tags.`{PARENT_TAG}` = "
                                                       f"'{parent.info.run_id}' and "
                                                       "attributes.status = 'RUNNING'")
        for run in [*children, parent]:
            client.set_tag(run.info.run_id, "retrain.recovered_by", recovered_by)
            client.set_terminated(run.info.run_id, "FAILED")
        ids.append(parent.info.run_id)
    return ids


def describe_run(tracking_uri: str, run_id: str, text: str) -> None:
    """The run's description in the MLflow UI."""
    set_tag(tracking_uri, run_id, "mlflow.note.content", text)
