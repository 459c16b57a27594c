"""Training, driver side: check inputs, open (or reopen) the MLflow run, launch the workers,
close the run, register the model when asked. Nothing here runs TensorFlow."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from pipeline import storage
from pipeline.config import MOVED_KEYS, Config, ConfigError
from pipeline.datasets.manifest import Manifest, is_version_name, open_version
from pipeline.datasets.reader import check_shardable
from pipeline.errors import InputError, PipelineError
from pipeline.redaction import redact
from pipeline.tracking import keys, registry, runs
from pipeline.tracking.model_card import card_link, write_model_card
from pipeline.tracking.models import model_run
from pipeline.tracking.params import loggable_params
from pipeline.tracking.registry import CHALLENGER, ModelRef
from pipeline.tracking.retry import MODEL_WRITE, Retrying
from pipeline.tracking.tracker import Tracker
from pipeline.train import checkpoints
from pipeline.train.balance import class_weights
from pipeline.train.launcher import launch, make_launcher
from pipeline.train.model import choose_model
from pipeline.train.spec import TrialRef, WorkerSpec
from pipeline.train.worker import train_worker

log = logging.getLogger(__name__)

# what a run learns: a resume must match these; every other section may change
LEARNING_KEYS = ("train.", "model", "dataset_version.")
# learning keys added in a release, as logged for the behaviour runs had before them
ADDED_KEYS = {"train.keep_best": "None",  # older runs kept the last epoch
              "train.class_weight": "none", "train.sampling": "none",
              "train.precision": "float32", "train.init_from": "None", "train.freeze": "[]",
              "train.freeze_epochs": "1", "train.fine_tune_learning_rate": "None"}


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
    best_epoch: int | None  # 1-based: the epoch whose weights the model kept (train.keep_best)
    mlflow_failures: list[str]  # writes that still failed after retries (training went on)
    model_version: ModelRef | None  # registered with alias challenger (``register=True``)
    pruned_epoch: int | None = None  # 1-based: a sweep's pruner stopped it there (no model)

    def metric(self, name: str) -> float:
        """``val_loss`` or ``val_accuracy`` (of the kept epoch), by name."""
        return self.val_loss if name == "val_loss" else self.val_accuracy

    @property
    def model_logged(self) -> bool:
        """The run has a model: it was not pruned and no model upload failed."""
        return self.pruned_epoch is None and not any(f.startswith(MODEL_WRITE)
                                                     for f in self.mlflow_failures)


def registered_name(cfg: Config, data: str, model: str) -> str:
    """``registry.model_name``, or ``<dataset name>-<model>``: the name of the folder the user
    passed (the versions folder, or a version's own folder unless it is a ``vNNNN``)."""
    if cfg.registry.model_name:
        return cfg.registry.model_name
    parts = storage.to_uri(data).rstrip("/").split("/")
    name = parts[-2] if is_version_name(parts[-1]) and len(parts) > 1 else parts[-1]
    return f"{name}-{model}"


def dataset_root(url: str) -> str:
    """Where a dataset lives, to compare locations: the folder of versions for a ``vNNNN``
    (``s3://b/ds/v0002`` -> ``s3://b/ds``), else the folder itself; ``s3a://`` read as
    ``s3://``, secrets redacted (as registry tags store them)."""
    uri = redact(storage.to_uri(url)).rstrip("/")
    parent, _, last = uri.rpartition("/")
    root = parent if is_version_name(last) and "/" in parent else uri
    return re.sub(r"^s3a://", "s3://", root)


def check_registered_name(cfg: Config, tracker: Tracker, name: str, dataset_url: str,
                          fingerprints: Callable[[], Collection[str]] = tuple) -> None:
    """Refuse a default registered name (``<dataset folder>-<model>``) holding a version trained
    on another dataset location: two datasets with the same folder name must not share a model
    silently. A version trained on content this dataset holds too (one of ``fingerprints()``,
    e.g. the demo's dataset re-ingested as a retrain's first version) is the same lineage. A
    name set in ``registry.model_name`` is the user's choice."""
    if cfg.registry.model_name:
        return
    ours, same_content = dataset_root(dataset_url), None
    for ref, tags in registry.versions(tracker, name):
        theirs = tags.get(keys.DATASET_URL)
        if theirs is None or dataset_root(theirs) == ours:
            continue
        same_content = set(fingerprints()) if same_content is None else same_content
        if tags.get(keys.DATASET_FINGERPRINT) not in same_content:
            raise ConfigError(
                f"config key 'registry.model_name': the default registered name '{name}' "
                f"(<dataset folder>-<model>) holds {ref}, trained on {dataset_root(theirs)}, "
                f"another dataset location than {ours}; set registry.model_name to a name of "
                "this dataset's own (or to this name, to share it on purpose)")


def _open_dataset(cfg: Config, data: str) -> tuple[str, Manifest, str]:
    """(version URI, manifest, model name), checked: splits, shards and model fit."""
    dataset_url, manifest = open_version(storage.to_uri(data))
    for split in ("train", "val"):
        if split not in manifest.splits:
            raise InputError(f"{dataset_url} has no {split} split; training needs train and val")
        check_shardable(split, manifest.splits[split].row_groups, cfg.train.workers)
    model = choose_model(cfg.train.model, manifest)
    if cfg.train.loss == "binary_crossentropy" and manifest.num_classes != 2:
        raise ConfigError(f"config key 'train.loss': binary_crossentropy needs two classes; the "
                          f"dataset version has {manifest.num_classes}")
    class_weights(cfg.train.class_weight, manifest.splits["train"].per_label, manifest.label_map)
    return dataset_url, manifest, model


def _lineage_tags(tracker: Tracker, cfg: Config, run_id: str) -> dict[str, str]:
    """Where the run's checkpoints go and, with ``train.init_from``, the model and the run its
    weights come from (checked before any worker starts)."""
    source = cfg.train.init_from
    tags = {keys.CHECKPOINT_URI: checkpoints.checkpoint_root(cfg.train.checkpoint_dir, run_id)}
    if source is None:
        return tags
    try:
        source_run = model_run(tracker, source)
    except registry.RegistryError as exc:
        raise ConfigError(f"config key 'train.init_from': {exc}") from None
    return tags | {keys.INIT_FROM_MODEL: source, keys.INIT_FROM_RUN: source_run}


def _differing_learning_keys(tracker: Tracker, run_id: str, params: dict) -> list[str]:
    logged = {**ADDED_KEYS, **runs.logged_params(tracker, run_id)}
    flat = loggable_params(params)
    moved = {f"{section}.{key}" for section, key in MOVED_KEYS}  # logged by older releases
    return sorted(k for k in flat.keys() | logged.keys() if k.startswith(LEARNING_KEYS)
                  and k not in moved and flat.get(k) != logged.get(k))


def _resume_point(cfg: Config, tracker: Tracker, run_id: str, params: dict
                  ) -> checkpoints.Checkpoint:
    if runs.run_status(tracker, run_id) == "FINISHED":
        raise ResumeError(f"run {run_id} finished; there is nothing to resume")
    differing = _differing_learning_keys(tracker, run_id, params)
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


def _open_run(cfg: Config, tracker: Tracker, manifest: Manifest, dataset_url: str, model: str,
              resume: str | None, parent_run_id: str | None
              ) -> tuple[str, checkpoints.Checkpoint | None]:
    """(run id, checkpoint to resume from): a new run, or the one ``resume`` names reopened."""
    params = {**cfg.to_dict(), "model": model,
              "dataset_version": {"url": dataset_url, "fingerprint": manifest.fingerprint}}
    if resume is None:
        run_name = f"{model} {datetime.now(UTC):%Y-%m-%d %H:%M:%S}"
        return runs.create_training_run(tracker, run_name, params, manifest, dataset_url,
                                        parent_run_id), None
    run_id = resume if resume != "latest" else runs.latest_unfinished_run(
        tracker, manifest.fingerprint, model)
    if run_id is None:
        raise ResumeError(f"no unfinished {model} run on dataset {manifest.fingerprint[:12]} "
                          f"in experiment '{tracker.experiment}' to resume")
    point = _resume_point(cfg, tracker, run_id, params)
    runs.reopen_run(tracker, run_id, point.epoch, point.logs)
    log.info("resuming run %s after epoch %d of %d", run_id, point.epoch + 1, cfg.train.epochs)
    return run_id, point


def _result(run_id: str, model: str, dataset_url: str, manifest: Manifest,
            results: list[dict]) -> TrainResult:
    """What rank 0 reported; validation metrics of the kept epoch (the best one, or the last)."""
    history, best = results[0]["history"], results[0]["best"]
    for failure in results[0]["mlflow_failures"]:
        log.warning("not recorded in MLflow run %s: %s", run_id, failure)
    kept = best["logs"] if best else {k: v[-1] for k, v in history.items()}
    return TrainResult(run_id=run_id, model=model, dataset_url=dataset_url,
                       dataset_fingerprint=manifest.fingerprint,
                       val_accuracy=kept["val_accuracy"], val_loss=kept["val_loss"],
                       steps_per_rank=[r["steps"] for r in results],
                       local_ranks=[r["local_rank"] for r in results],
                       initial_epoch=results[0]["initial_epoch"],
                       epochs_run=results[0]["epochs_run"],
                       best_epoch=best["epoch"] + 1 if best else None,
                       mlflow_failures=results[0]["mlflow_failures"], model_version=None,
                       pruned_epoch=results[0]["pruned_epoch"])


def _record_best_epoch(tracker: Tracker, result: TrainResult) -> None:
    """On the run: which epoch the model is, and its validation metrics."""
    if result.best_epoch is None:
        return
    runs.set_tags(tracker, result.run_id, {keys.BEST_EPOCH: str(result.best_epoch)})
    runs.log_metrics(tracker, result.run_id, {keys.BEST_PREFIX + "val_loss": result.val_loss,
                                              keys.BEST_PREFIX + "val_accuracy":
                                              result.val_accuracy})
    log.info("the model keeps epoch %d (val_loss %.4f, val_accuracy %.4f)", result.best_epoch,
             result.val_loss, result.val_accuracy)


def train(cfg: Config, data: str, resume: str | None = None, parent_run_id: str | None = None,
          register: bool = False, trial: TrialRef | None = None) -> TrainResult:
    """Train on the dataset version at ``data`` and return the MLflow run and final metrics.

    ``resume``: a run id, or ``"latest"`` for the newest failed or killed run of this dataset and
    model; training continues after its last checkpoint, logging into the same run.
    ``parent_run_id``: nest the run under a sweep's or a retrain's. ``register``: register the
    model as the challenger. ``trial``: a tpe sweep's trial, which rank 0 reports each epoch
    to; when its pruner stops the training, the run logs no model and is tagged.
    """
    dataset_url, manifest, model = _open_dataset(cfg, data)
    tracker = Tracker.from_config(cfg.mlflow)
    tracker.experiment_id  # noqa: B018 - the store must answer before any compute is spent
    if register:
        check_registered_name(cfg, tracker, registered_name(cfg, data, model), dataset_url,
                              lambda: {manifest.fingerprint})
    run_id, resume_from = _open_run(cfg, tracker, manifest, dataset_url, model, resume,
                                    parent_run_id)
    tags = _lineage_tags(tracker, cfg, run_id)
    runs.set_tags(tracker, run_id, tags)
    root = tags[keys.CHECKPOINT_URI]
    log.info("MLflow run %s, checkpoints in %s", run_id, root)
    spec = WorkerSpec(dataset_url, manifest, cfg.train, cfg.launch, tracker, run_id, model, root,
                      resume_from, cfg.mlflow.epoch_models, trial)
    ok = False
    try:
        results = launch(make_launcher(cfg), train_worker, (spec,), cfg.train.workers)
        ok = True
    finally:
        runs.end_run(tracker, run_id, ok)
    result = _result(run_id, model, dataset_url, manifest, results)
    if result.pruned_epoch is not None:  # no model, so no best epoch of one to record
        Retrying()("the pruning tag", runs.set_tags, tracker, run_id,
                   {keys.SWEEP_PRUNED_EPOCH: str(result.pruned_epoch)})
        log.info("run %s was pruned after epoch %d: no model logged", run_id,
                 result.pruned_epoch)
        return result
    Retrying()("the best epoch", _record_best_epoch, tracker, result)  # never fatal
    if not result.model_logged:
        log.warning("run %s has no logged model, so nothing was registered", run_id)
    elif register:
        return replace(result, model_version=register_challenger(cfg, data, result))
    return result


def register_challenger(cfg: Config, data: str, result: TrainResult,
                        tags: dict[str, str] | None = None) -> ModelRef:
    """The trained model as a new registered version with the ``challenger`` alias."""
    tracker = Tracker.from_config(cfg.mlflow)
    version = registry.register(tracker, result.run_id, registered_name(cfg, data, result.model),
                                {keys.DATASET_URL: result.dataset_url,
                                 keys.DATASET_FINGERPRINT: result.dataset_fingerprint,
                                 keys.TRAIN_RUN_ID: result.run_id,
                                 "val_accuracy": f"{result.val_accuracy:.6f}",
                                 "val_loss": f"{result.val_loss:.6f}", **(tags or {})})
    registry.set_alias(tracker, version, CHALLENGER)
    card = write_model_card(tracker, version, result.run_id)
    registry.describe(tracker, version, f"Trained by run {result.run_id}; not judged yet. "
                                        f"{card_link(result.run_id, card)}".strip())
    log.info("registered %s as %s", version, CHALLENGER)
    return version
