"""Training, driver side: check inputs, open (or reopen) the MLflow run, launch the workers,
close the run. Nothing here runs TensorFlow."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from pipeline.config import Config, ConfigError
from pipeline.datasets import storage
from pipeline.datasets.manifest import Manifest, open_version
from pipeline.datasets.reader import check_shardable
from pipeline.errors import InputError, PipelineError
from pipeline.tracking import registry, runs
from pipeline.tracking.registry import CHALLENGER, ModelRef
from pipeline.tracking.retry import MODEL_WRITE
from pipeline.tracking.store import absolute_tracking_uri, check_store
from pipeline.train import checkpoints
from pipeline.train.features import choose_model
from pipeline.train.launcher import launch
from pipeline.train.spec import WorkerSpec
from pipeline.train.worker import train_worker

log = logging.getLogger(__name__)

# keys that may change between a run and its resume: where and how it runs, not what it learns
# (the ingest sections only describe how datasets are built; the dataset itself is compared)
OPERATIONAL_KEYS = ("data_dir", "spark.", "images.", "text.", "split.", "dataset.", "registry.",
                    "retrain.",
                    "mlflow.ui_", "train.launcher", "train.hosts", "train.start_timeout_s",
                    "train.stall_timeout_s", "train.reader_workers", "train.threads_per_worker")


class ResumeError(PipelineError, ValueError):
    """The run to resume cannot be found, has no checkpoint, or was trained differently."""


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model: str
    dataset_url: str
    dataset_fingerprint: str
    val_accuracy: float
    val_loss: float
    steps_per_rank: list[int]
    local_ranks: list[int]
    initial_epoch: int
    epochs_run: int
    mlflow_failures: list[str]  # writes that still failed after retries (training went on)
    model_version: ModelRef | None  # registered with alias challenger (registry.register_trained)


def registered_name(cfg: Config, data: str, model: str) -> str:
    """``registry.model_name``, or ``<dataset name>-<model>``: the name of the folder the user
    passed (the versions folder, or a version's own folder unless it is a ``vNNNN``)."""
    if cfg.registry.model_name:
        return cfg.registry.model_name
    parts = storage.to_uri(data).rstrip("/").split("/")
    name = parts[-2] if re.fullmatch(r"v\d+", parts[-1]) and len(parts) > 1 else parts[-1]
    return f"{name}-{model}"


def _check_fit(cfg: Config, manifest: Manifest) -> None:
    if cfg.train.loss == "binary_crossentropy" and manifest.num_classes != 2:
        raise ConfigError(f"config key 'train.loss': binary_crossentropy needs two classes; the "
                          f"dataset version has {manifest.num_classes}")


def _resume_point(cfg: Config, tracking_uri: str, run_id: str, params: dict
                  ) -> checkpoints.Checkpoint:
    if runs.run_status(tracking_uri, run_id) == "FINISHED":
        raise ResumeError(f"run {run_id} finished; there is nothing to resume")
    differing = [key for key in runs.differing_params(tracking_uri, run_id, params)
                 if not key.startswith(OPERATIONAL_KEYS)]
    if differing:
        raise ResumeError(f"run {run_id} was trained with different settings "
                          f"({', '.join(differing)}); resume with the same configuration")
    root = checkpoints.checkpoint_root(cfg.train.checkpoint_dir, run_id)
    point = checkpoints.latest(root)
    if point is None or not storage.exists(point.uri):
        raise ResumeError(f"run {run_id} has no complete checkpoint under {root}")
    if point.epoch + 1 >= cfg.train.epochs:
        raise ResumeError(f"run {run_id} already completed all {cfg.train.epochs} epochs")
    return point


def train(cfg: Config, data: str, resume: str | None = None,
          parent_run_id: str | None = None, warm_start: str | None = None) -> TrainResult:
    """Train on the dataset version at ``data`` and return the MLflow run and final metrics.

    ``resume``: a run id, or ``"latest"`` for the newest failed or killed run of this dataset and
    model; training continues after its last checkpoint, logging into the same run.
    ``parent_run_id``: a sweep's or a retrain's run; this run is nested under it and not
    registered. ``warm_start``: a model URI whose weights the new model starts from.
    """
    dataset_url, manifest = open_version(storage.to_uri(data))
    workers = cfg.train.workers
    for split in ("train", "val"):
        if split not in manifest.splits:
            raise InputError(f"{dataset_url} has no {split} split; training needs train and val")
        check_shardable(split, manifest.splits[split].row_groups, workers)
    model = choose_model(cfg.train.model, manifest)
    _check_fit(cfg, manifest)

    tracking_uri = absolute_tracking_uri(cfg.mlflow.tracking_uri)
    experiment_id = check_store(cfg.mlflow)  # before any compute is spent
    params = {**cfg.to_dict(), "model": model,
              "dataset_version": {"url": dataset_url, "fingerprint": manifest.fingerprint}}
    resume_from = None
    if resume is None:
        run_name = f"{model} {datetime.now(UTC):%Y-%m-%d %H:%M:%S}"
        run_id = runs.create_training_run(tracking_uri, experiment_id, run_name, params,
                                          manifest, dataset_url, parent_run_id)
    else:
        run_id = resume if resume != "latest" else runs.latest_unfinished_run(
            tracking_uri, experiment_id, manifest.fingerprint, model)
        if run_id is None:
            raise ResumeError(f"no unfinished {model} run on dataset {manifest.fingerprint[:12]} "
                              f"in experiment '{cfg.mlflow.experiment}' to resume")
        resume_from = _resume_point(cfg, tracking_uri, run_id, params)
        runs.reopen_run(tracking_uri, run_id, resume_from.epoch, resume_from.logs)
        log.info("resuming run %s after epoch %d of %d", run_id, resume_from.epoch + 1,
                 cfg.train.epochs)
    root = checkpoints.checkpoint_root(cfg.train.checkpoint_dir, run_id)
    runs.set_tag(tracking_uri, run_id, "checkpoint.uri", root)
    if warm_start is not None:
        runs.set_tag(tracking_uri, run_id, "warm_start.model", warm_start)
    log.info("MLflow run %s, checkpoints in %s", run_id, root)

    spec = WorkerSpec(dataset_url, manifest, cfg.train, tracking_uri, run_id, model, root,
                      resume_from, warm_start)
    ok, spark = False, None
    try:
        spark = _spark_for(cfg)
        results = launch(train_worker, (spec,), cfg.train)
        ok = True
    finally:
        runs.end_run(tracking_uri, run_id, ok)
        if spark is not None:
            spark.stop()
    history = results[0]["history"]
    for failure in results[0]["mlflow_failures"]:
        log.warning("not recorded in MLflow run %s: %s", run_id, failure)
    result = TrainResult(run_id=run_id, model=model, dataset_url=dataset_url,
                         dataset_fingerprint=manifest.fingerprint,
                         val_accuracy=history["val_accuracy"][-1],
                         val_loss=history["val_loss"][-1],
                         steps_per_rank=[r["steps"] for r in results],
                         local_ranks=[r["local_rank"] for r in results],
                         initial_epoch=results[0]["initial_epoch"],
                         epochs_run=len(history["loss"]),
                         mlflow_failures=results[0]["mlflow_failures"], model_version=None)
    if any(f.startswith(MODEL_WRITE) for f in result.mlflow_failures):
        log.warning("run %s has no logged model, so nothing was registered", run_id)
    elif cfg.registry.register_trained and parent_run_id is None:
        return replace(result, model_version=register_challenger(cfg, data, result))
    return result


def register_challenger(cfg: Config, data: str, result: TrainResult,
                        tags: dict[str, str] | None = None) -> ModelRef:
    """The trained model as a new registered version with the ``challenger`` alias."""
    tracking_uri = absolute_tracking_uri(cfg.mlflow.tracking_uri)
    version = registry.register(tracking_uri, result.run_id,
                                registered_name(cfg, data, result.model), {
        "dataset.url": result.dataset_url, "dataset.fingerprint": result.dataset_fingerprint,
        "train.run_id": result.run_id, "val_accuracy": f"{result.val_accuracy:.6f}",
        "val_loss": f"{result.val_loss:.6f}", **(tags or {})})
    registry.set_alias(tracking_uri, version, CHALLENGER)
    log.info("registered %s as %s", version, CHALLENGER)
    return version


def _spark_for(cfg: Config):
    """The Spark session the ``spark`` launcher runs its tasks in (None for other launchers)."""
    if cfg.train.launcher != "spark":
        return None
    from pipeline.spark import get_spark

    return get_spark(cfg.spark, app_name="pipeline-train")
