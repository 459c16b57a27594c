"""Run lifecycle on the driver: one run per job, created before any compute, holding what a
reader of the MLflow UI needs: redacted parameters, library versions, dataset lineage."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from pipeline import storage
from pipeline.datasets.manifest import VOCAB_NAME, Manifest
from pipeline.datasets.statistics import VALIDATION_NAME, read_validation
from pipeline.errors import PipelineError
from pipeline.redaction import redact
from pipeline.tracking import keys
from pipeline.tracking.params import library_versions, loggable_params
from pipeline.tracking.reports import log_statistics
from pipeline.tracking.source import source_tags
from pipeline.tracking.tracker import Tracker


class RunNotFoundError(PipelineError, LookupError):
    """No MLflow run has the given id."""


def dataset_input(manifest: Manifest, dataset_url: str, context: str):
    """The dataset version as an MLflow dataset (the UI's Datasets column): source and digest."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    name = redact(f"{manifest.kind}:{dataset_url.rstrip('/').rsplit('/', 1)[-1]}")
    profile = {split: info.rows for split, info in manifest.splits.items()}
    dataset = Dataset(name=name, digest=manifest.fingerprint[:16],
                      source_type=urlparse(dataset_url).scheme or "local",
                      source=json.dumps({"uri": redact(dataset_url)}),
                      schema=json.dumps({"fields": manifest.schema}),
                      profile=json.dumps(profile))
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)])


def lineage_tags(manifest: Manifest, dataset_url: str) -> dict[str, str]:
    """The dataset version a run used: its location (redacted), fingerprint, and how a
    retrain's validation judged it (when one did)."""
    tags = {keys.DATASET_URL: redact(dataset_url), keys.DATASET_FINGERPRINT: manifest.fingerprint}
    return tags | validation_tags(read_validation(dataset_url) or {})


def validation_tags(outcome: Mapping[str, Any]) -> dict[str, str]:
    """The tags of a validation outcome (``Validation.to_dict``): status, features named."""
    if "status" not in outcome:
        return {}
    tags = {keys.VALIDATION_STATUS: outcome["status"],
            keys.VALIDATION_ERRORS: ",".join(outcome.get("errors", [])),
            keys.VALIDATION_WARNINGS: ",".join(outcome.get("warnings", []))}
    if outcome.get("reference"):
        tags[keys.VALIDATION_REFERENCE] = redact(outcome["reference"])
    return {key: value for key, value in tags.items() if value}


def log_validation(tracker: Tracker, run_id: str, outcome: Mapping[str, Any],
                   report_path: str) -> None:
    """A validation on a run: its tags, the outcome as JSON and the HTML report."""
    set_tags(tracker, run_id, validation_tags(outcome))
    tracker.client.log_text(run_id, json.dumps(outcome, indent=1, default=str),
                            f"{keys.VALIDATION_ARTIFACTS}/{VALIDATION_NAME}")
    tracker.client.log_artifact(run_id, report_path, keys.VALIDATION_ARTIFACTS)


def create_run(tracker: Tracker, job: str, run_name: str, tags: Mapping[str, str] | None = None,
               parent_run_id: str | None = None) -> str:
    """A new run of ``job`` in the tracker's experiment, nested under ``parent_run_id``, with
    the command line and code version that made it."""
    all_tags = {key: redact(value) for key, value in
                {keys.JOB_TAG: job, **source_tags(), **(tags or {})}.items()}
    if parent_run_id:
        all_tags[keys.PARENT_TAG] = parent_run_id
    run = tracker.client.create_run(tracker.experiment_id, run_name=run_name, tags=all_tags)
    return run.info.run_id


def log_params(tracker: Tracker, run_id: str, params: Mapping[str, Any]) -> None:
    """The parameters, flattened and redacted, in batches MLflow accepts."""
    from mlflow.entities import Param, RunTag

    items = [Param(k, v) for k, v in sorted(loggable_params(params).items())]
    for start in range(0, len(items), 100):
        tracker.client.log_batch(run_id, params=items[start:start + 100],
                                 tags=[RunTag("mlflow.source.type", "JOB")] if start == 0 else [])


def log_metrics(tracker: Tracker, run_id: str, values: Mapping[str, float], step: int = 0) -> None:
    from mlflow.entities import Metric

    now_ms = int(time.time() * 1000)
    tracker.client.log_batch(run_id, metrics=[Metric(k, float(v), now_ms, step)
                                              for k, v in sorted(values.items())])


def create_training_run(tracker: Tracker, run_name: str, params: Mapping[str, Any],
                        manifest: Manifest, dataset_url: str,
                        parent_run_id: str | None = None) -> str:
    """Create the run: parameters and library versions, dataset lineage, and the version's
    manifest, label map and vocabulary as artifacts."""
    client = tracker.client
    run_id = create_run(tracker, "train", run_name, lineage_tags(manifest, dataset_url),
                        parent_run_id)
    log_params(tracker, run_id, {**params, "versions": library_versions()})
    client.log_inputs(run_id, datasets=[dataset_input(manifest, dataset_url, "train")])
    client.log_text(run_id, manifest.to_json(), keys.MANIFEST_ARTIFACT)
    client.log_dict(run_id, manifest.label_map, keys.LABELS_ARTIFACT)
    if manifest.kind == "text":
        vocabulary = storage.read_text(storage.join(dataset_url, VOCAB_NAME))
        client.log_text(run_id, vocabulary, keys.VOCAB_ARTIFACT)
    log_statistics(client, run_id, dataset_url)
    return run_id


def end_run(tracker: Tracker, run_id: str, ok: bool) -> None:
    tracker.client.set_terminated(run_id, "FINISHED" if ok else "FAILED")


def set_tags(tracker: Tracker, run_id: str, tags: Mapping[str, str]) -> None:
    """Tags on a run, each value redacted (a URI's secrets are never stored)."""
    for key, value in tags.items():
        tracker.client.set_tag(run_id, key, redact(value))


def describe_run(tracker: Tracker, run_id: str, text: str) -> None:
    """The run's description in the MLflow UI."""
    tracker.client.set_tag(run_id, keys.NOTE_TAG, text)


def logged_params(tracker: Tracker, run_id: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return dict(tracker.client.get_run(run_id).data.params)
    except MlflowException:
        raise RunNotFoundError(f"no MLflow run {run_id} in the tracking store") from None


def run_status(tracker: Tracker, run_id: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        return tracker.client.get_run(run_id).info.status
    except MlflowException:
        raise RunNotFoundError(f"no MLflow run {run_id} in the tracking store") from None


def latest_unfinished_run(tracker: Tracker, fingerprint: str, model: str) -> str | None:
    """The newest training run of ``model`` on this dataset that failed or was killed (not one
    still RUNNING: that may be a live job; name it with ``--run-id`` after a driver crash)."""
    found = tracker.client.search_runs(
        [tracker.experiment_id],
        filter_string=(f"tags.`{keys.DATASET_FINGERPRINT}` = {quote(fingerprint)} and "
                       f"params.model = {quote(model)} and tags.`{keys.JOB_TAG}` = "
                       f"{quote('train')} and attributes.status != {quote('FINISHED')}"),
        order_by=["attributes.start_time DESC"], max_results=50)
    standalone = [r for r in found if r.info.status in ("FAILED", "KILLED")
                  and keys.PARENT_TAG not in r.data.tags]  # not live runs, not sweep trials
    return standalone[0].info.run_id if standalone else None


def quote(value: str) -> str:
    """A string literal for an MLflow search filter (single quotes, or double when the value
    holds a single quote)."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"{value!r} holds both quote characters; MLflow cannot search for it")


def reopen_run(tracker: Tracker, run_id: str, epoch: int, logs: Mapping[str, float]) -> None:
    """Mark a run RUNNING again; log the checkpointed epoch's metrics if the crash came between
    the checkpoint and the MLflow write, so the history has neither gap nor repeat."""
    client = tracker.client
    client.update_run(run_id, status="RUNNING")
    logged_steps = {m.step for m in client.get_metric_history(run_id, "loss")}
    if logs and epoch not in logged_steps:
        log_metrics(tracker, run_id, logs, step=epoch)


def log_evaluation_run(tracker: Tracker, model_uri: str, model_ref, manifest: Manifest,
                       dataset_url: str, split: str, scores,
                       parent_run_id: str | None = None, robustness=None,
                       explained=None) -> str:
    """A finished run holding one evaluation: metrics, confusion matrix, per-class table, the
    review (macro-F1, ROC-AUC, calibration, slices) when the scores have one, accuracy under
    corruption (its metrics and figure) and explanations when measured."""
    from pipeline.tracking.explanation_report import log_explanations
    from pipeline.tracking.reports import log_report, log_review, log_robustness

    tags = {keys.EVAL_MODEL_URI: model_uri, keys.EVAL_SPLIT: split,
            **lineage_tags(manifest, dataset_url)}
    if model_ref is not None:
        tags |= {keys.MODEL_NAME: model_ref.name, keys.MODEL_VERSION: model_ref.version}
    run_id = create_run(tracker, "evaluate", f"evaluate {model_ref or model_uri} on {split}",
                        tags, parent_run_id)
    try:
        tracker.client.log_inputs(run_id, datasets=[dataset_input(manifest, dataset_url,
                                                                  "evaluation")])
        log_metrics(tracker, run_id, {f"{split}_{name}": value
                                      for name, value in review_metrics(scores).items()})
        log_report(tracker.client, run_id, scores.confusion, manifest.labels, split)
        if scores.review is not None:
            log_review(tracker.client, run_id, scores.review, split)
        if robustness is not None:
            log_metrics(tracker, run_id, robustness.metrics())
            log_robustness(tracker.client, run_id, robustness.curves, robustness.clean)
        if explained is not None:
            log_explanations(tracker.client, run_id, explained)
    except Exception:
        end_run(tracker, run_id, ok=False)
        raise
    end_run(tracker, run_id, ok=True)
    return run_id


def review_metrics(scores) -> dict[str, float]:
    """The numbers of an evaluation: rows, accuracy, loss and, with a review, macro-F1,
    ROC-AUC and expected calibration error (NaN when undefined, e.g. ROC-AUC of one class)."""
    values = {"accuracy": scores.accuracy, "loss": scores.loss, "rows": scores.rows}
    if scores.review is not None:
        values |= {"macro_f1": scores.review.macro_f1, "roc_auc": scores.review.roc_auc,
                   "ece": scores.review.ece}
    return values


def log_ingest_run(tracker: Tracker, parent_run_id: str, manifest: Manifest, dataset_url: str,
                   changes: Mapping[str, int]) -> str:
    """A finished nested run for a dataset version a retrain built: what changed, the counts."""
    run_id = create_run(tracker, "ingest", f"ingest {dataset_url.rsplit('/', 1)[-1]}",
                        lineage_tags(manifest, dataset_url), parent_run_id)
    counts = {f"inputs_{name}": n for name, n in changes.items()}
    counts |= {"discovered": manifest.discovered, "quarantined": manifest.quarantined}
    counts |= {f"{split}_rows": info.rows for split, info in manifest.splits.items()}
    # what an image version kept from the previous one (rows not decoded, files not rewritten)
    counts |= {key: manifest.extra[key] for key in ("reused_rows", "carried_files")
               if key in manifest.extra}
    log_metrics(tracker, run_id, counts)
    tracker.client.log_inputs(run_id, datasets=[dataset_input(manifest, dataset_url, "ingest")])
    tracker.client.log_text(run_id, manifest.to_json(), keys.MANIFEST_ARTIFACT)
    end_run(tracker, run_id, ok=True)
    return run_id


def fail_abandoned_retrains(tracker: Tracker, output_uri: str, recovered_by: str) -> list[str]:
    """Mark the RUNNING retrain runs of ``output_uri`` and their RUNNING steps FAILED: only
    the lock holder calls this, so their processes are gone."""
    client, experiments = tracker.client, [tracker.experiment_id]
    abandoned = client.search_runs(
        experiments, f"tags.`{keys.JOB_TAG}` = {quote('retrain')} and "
                     f"tags.`{keys.RETRAIN_OUTPUT}` = {quote(redact(output_uri))} and "
                     f"attributes.status = {quote('RUNNING')}")
    ids = []
    for parent in abandoned:
        children = client.search_runs(experiments, f"tags.`{keys.PARENT_TAG}` = "
                                                   f"{quote(parent.info.run_id)} and "
                                                   f"attributes.status = {quote('RUNNING')}")
        for run in [*children, parent]:
            client.set_tag(run.info.run_id, keys.RETRAIN_RECOVERED_BY, recovered_by)
            client.set_terminated(run.info.run_id, "FAILED")
        ids.append(parent.info.run_id)
    return ids
