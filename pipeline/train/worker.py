"""The per-worker training function: runs in every Horovod process (the remote side).

Each rank reads its own Petastorm shard endlessly and runs the same number of steps per
epoch, so no rank waits for another at an epoch end, however uneven the shards. Validation
reads every row once. Rank 0 checkpoints every epoch and writes to MLflow. In elastic mode
(``launch.elastic``) the fit goes on after a lost or joining worker, from the last epoch end.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any

from pipeline import storage
from pipeline.config import TrainConfig
from pipeline.datasets.manifest import VOCAB_NAME
from pipeline.datasets.reader import model_batches, read_batches
from pipeline.logs import setup_logging
from pipeline.train.balance import acceptance, class_weights
from pipeline.train.inputs import training_examples
from pipeline.train.model import build_model
from pipeline.train.optim import fine_tune_config, make_loss, make_optimizer, make_schedule
from pipeline.train.spec import WorkerSpec
from pipeline.train.transfer import TransferError, copy_matching_weights, layers_to_freeze

log = logging.getLogger("pipeline.train.worker")


def steps_per_epoch(train_rows: int, batch_size: int, workers: int) -> int:
    return max(1, math.ceil(train_rows / (batch_size * workers)))


def _configure_devices(tf, hvd, threads: int) -> None:
    """One GPU per local rank when GPUs exist; otherwise a fixed CPU thread budget."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        tf.config.set_visible_devices(gpus[hvd.local_rank() % len(gpus)], "GPU")
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


@dataclass(frozen=True)
class _Carried:
    """Where a fit starts: the first epoch (0-based), the best epoch so far and early
    stopping's count, from the checkpoint to resume or from elastic mode's last commit."""

    epoch: int
    best: dict
    early_stopping: dict


@dataclass
class _Watchers:
    """The callbacks whose findings outlive ``model.fit``."""

    validation: Any  # every rank: the last epoch's confusion matrix
    keep_best: Any  # rank 0 with train.keep_best: the best epoch and its weights
    pruning: Any  # a tpe sweep's trial: the epoch its pruner stopped the training at


def _callbacks(spec: WorkerSpec, hvd, prepared, steps: int, retrying, watchers: _Watchers,
               carried: _Carried, state) -> list:
    from pipeline.train import callbacks as cb

    cfg, rank = spec.train, hvd.rank()
    rate = cb.LearningRateInLogs(prepared.schedule)
    chain = [cb.EpochTimer(steps * cfg.batch_size * hvd.size()),
             hvd.callbacks.MetricAverageCallback(),
             watchers.validation,
             rate]
    if state is None:  # elastic mode: the state's sync broadcasts at each (re)start
        chain.insert(1, hvd.callbacks.BroadcastGlobalVariablesCallback(0))
    if prepared.frozen:
        import tensorflow as tf

        chain.insert(0, cb.UnfreezeAfter(cfg.freeze_epochs, prepared.frozen, lambda:
                                         _phase_optimizer(tf, hvd, cfg, steps, True), rate))
    early_stopping = None
    if cfg.early_stopping.patience:
        early_stopping = cb.ResumableEarlyStopping(cfg.early_stopping.patience,
                                                   cfg.early_stopping.min_delta,
                                                   carried.early_stopping)
        chain.append(early_stopping)
    chain += [c for c in (watchers.pruning, watchers.keep_best) if c]
    if state is not None:  # elastic mode
        from horovod.tensorflow import broadcast_object

        chain.append(cb.SaveElasticState(state, broadcast_object, early_stopping,
                                         watchers.keep_best, bool(cfg.keep_best)))
    if rank == 0:
        chain += _rank0_callbacks(spec, hvd, steps, retrying, watchers, early_stopping)
    chain += [cb.CheckHostUpdates(state)] if state is not None else []
    return chain


def _rank0_callbacks(spec: WorkerSpec, hvd, steps: int, retrying, watchers: _Watchers,
                     early_stopping) -> list:
    """The checkpoint, MLflow's epoch metrics and the progress lines."""
    from pipeline.tracking.keras import MlflowEpochLogger
    from pipeline.train import callbacks as cb

    cfg, keep_best = spec.train, watchers.keep_best
    return [cb.CheckpointEachEpoch(spec.checkpoint_root, early_stopping, keep_best,
                                   watchers.validation),
            MlflowEpochLogger(spec.tracker, spec.run_id, cfg.epochs, steps, retrying,
                              spec.epoch_models),
            cb.StepProgress(cfg.epochs, steps, cfg.batch_size * hvd.size())]


def _log_models(spec: WorkerSpec, model, history: dict, retrying, confusion) -> None:
    """Rank 0, after training: the report of the kept epoch (``confusion``), the Keras model,
    then the raw-input model."""
    from pipeline.tracking.keras import log_outcome

    example, _ = next(model_batches(spec.dataset_url, spec.manifest, "val", 4))
    if log_outcome(spec.tracker, spec.run_id, model, example, confusion, spec.manifest.labels,
                   history, retrying):
        _log_raw_model(spec, model, example, retrying)


def _log_raw_model(spec: WorkerSpec, model, example, retrying) -> None:
    """Beside the Keras model: the raw-input model (what is registered and served), with the
    dataset's preprocessing; a raw input example made from the same validation rows."""
    from pipeline.inference.raw_model import RawInputPredictor, raw_example
    from pipeline.tracking.retry import MODEL_WRITE
    from pipeline.tracking.serving import log_raw_model

    vocab = texts = None
    if spec.manifest.kind == "text":
        vocab = storage.read_text(storage.join(spec.dataset_url, VOCAB_NAME))
        texts = [str(t) for t in next(read_batches(spec.dataset_url, "val", ("text",),
                                                   len(example)))["text"]]
    retrying(MODEL_WRITE, log_raw_model, spec.tracker, spec.run_id, model, spec.manifest, vocab,
             RawInputPredictor.from_folder, raw_example(spec.manifest, example, texts))


def _init_from(model, spec: WorkerSpec, rank: int) -> None:
    """Start from the weights of ``train.init_from``'s layers that match (the n-th layer of a
    kind, with the same weight shapes)."""
    from pipeline.tracking.models import load_keras_model

    uri = spec.train.init_from
    transferred, fresh = copy_matching_weights(model, load_keras_model(spec.tracker, uri))
    if not transferred:
        raise TransferError(f"config key 'train.init_from': no layer of {uri} matches the "
                            f"{model.name} configured in train.* (the n-th layer of a kind, "
                            "with the same weight shapes)")
    if rank == 0:
        log.info("weights from %s: %s transferred%s", uri, ", ".join(transferred),
                 f"; {', '.join(fresh)} start fresh" if fresh else "")


def _phase_optimizer(tf, hvd, cfg: TrainConfig, steps: int, fine_tuning: bool):
    """(Horovod optimiser, its learning-rate schedule) of a run, or of its fine-tuning epochs
    (after ``train.freeze_epochs``); with float16, Keras's dynamic loss scaling around it.
    Planned for ``train.workers`` and its ``steps`` per epoch: every rank builds the same one,
    even a rank that joins an elastic job while it runs with fewer workers."""
    phase = fine_tune_config(cfg) if fine_tuning else cfg
    schedule = make_schedule(phase, cfg.workers, steps)
    optimizer = hvd.DistributedOptimizer(make_optimizer(phase, schedule))
    if cfg.precision == "mixed_float16":
        optimizer = tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer, schedule


@dataclass
class _Prepared:
    """The compiled model, its schedule, the first epoch to run and what is frozen until when."""

    model: Any
    schedule: Any
    initial_epoch: int
    frozen: list  # layers frozen now, unfrozen at train.freeze_epochs (empty: none)


def _restore(spec: WorkerSpec, model, frozen_before: bool) -> None:
    """A resume: weights and optimiser state, or only the weights on the first fine-tuning
    epoch (the frozen phase's optimiser has no slots for the unfrozen layers)."""
    from pipeline.train import checkpoints

    first_fine_tuning = (bool(spec.train.freeze) and not frozen_before
                         and spec.resume_from.epoch + 1 == spec.train.freeze_epochs)
    if first_fine_tuning:
        checkpoints.restore_weights(spec.resume_from, model)
    else:
        checkpoints.restore(spec.resume_from, model, model.optimizer)


def _compiled_model(spec: WorkerSpec, tf, hvd, steps: int) -> _Prepared:
    """The model compiled with Horovod's optimizer at ``train.precision``: from the seed (and
    ``train.init_from``'s weights), or from the checkpoint to resume."""
    cfg = spec.train
    # the same initial weights on every rank (Horovod broadcasts only after the first step);
    # the shards are shuffled with per-rank seeds
    tf.keras.utils.set_random_seed(cfg.seed)
    tf.keras.mixed_precision.set_global_policy(cfg.precision)
    model = build_model(spec.model, spec.manifest, cfg)
    first = spec.resume_from.epoch + 1 if spec.resume_from else 0
    frozen = layers_to_freeze(model, cfg.freeze) if first < cfg.freeze_epochs else []
    for layer in frozen:
        layer.trainable = False
    optimizer, schedule = _phase_optimizer(tf, hvd, cfg, steps, fine_tuning=bool(cfg.freeze)
                                           and not frozen)
    model.compile(optimizer=optimizer, loss=make_loss(cfg.loss),
                  metrics=[tf.keras.metrics.CategoricalAccuracy(name="accuracy")])
    if spec.resume_from is not None:
        _restore(spec, model, bool(frozen))
    elif cfg.init_from is not None:
        _init_from(model, spec, hvd.rank())
    return _Prepared(model, schedule, first, frozen)


def _fit(spec: WorkerSpec, tf, model, initial_epoch: int, callbacks: list, steps: int, rank: int,
         size: int):
    """``model.fit`` on this rank's endless shard, ``steps`` batches per epoch, with the class
    weights or balanced sampling ``train`` asks for."""
    cfg, counts = spec.train, spec.manifest.splits["train"].per_label
    rates = (acceptance(counts, spec.manifest.label_map) if cfg.sampling == "balanced"
             else None)
    with training_examples(tf, spec.dataset_url, spec.manifest, rank, size,
                           seed=cfg.seed + rank + 1000 * initial_epoch,
                           reader_workers=spec.launch.reader_workers,
                           acceptance=rates) as examples:
        if cfg.shuffle_buffer:
            examples = examples.shuffle(cfg.shuffle_buffer, seed=cfg.seed + rank)
        batches = examples.batch(cfg.batch_size).prefetch(tf.data.AUTOTUNE)
        return model.fit(batches, steps_per_epoch=steps, epochs=cfg.epochs,
                         initial_epoch=initial_epoch, callbacks=callbacks, verbose=0,
                         class_weight=class_weights(cfg.class_weight, counts,
                                                    spec.manifest.label_map))


def _steps_run(model, start_step: int, chain: list) -> int:
    """Optimiser steps taken in this process, over both optimisers when layers were unfrozen."""
    from pipeline.train.callbacks import UnfreezeAfter

    now = int(model.optimizer.iterations.numpy())
    unfrozen = [c.steps_before for c in chain if isinstance(c, UnfreezeAfter) and c.steps_before]
    return unfrozen[0] - start_step + now if unfrozen else now - start_step


def _fit_once(spec: WorkerSpec, tf, hvd, hvd_tf, prepared: _Prepared, carried: _Carried,
              retrying, state=None) -> tuple[Any, list, _Watchers]:
    """(Keras history, callbacks, watchers) of ``model.fit`` from ``carried.epoch`` on this
    rank's shard, with the steps per epoch of the current number of workers."""
    from pipeline.train.callbacks import ExactValidation, KeepBestEpoch, PruneAtEpochEnd

    cfg, rank, size = spec.train, hvd.rank(), hvd.size()
    steps = steps_per_epoch(spec.manifest.splits["train"].rows, cfg.batch_size, size)
    validation = ExactValidation(spec, hvd_tf)
    watchers = _Watchers(validation, KeepBestEpoch(cfg.keep_best, spec.checkpoint_root,
                                                   carried.best, validation)
                         if rank == 0 and cfg.keep_best else None,
                         PruneAtEpochEnd(spec.trial, hvd_tf) if spec.trial else None)
    chain = _callbacks(spec, hvd, prepared, steps, retrying, watchers, carried, state)
    if rank == 0:
        log.info("training %s on %d workers: %d steps per epoch, epochs %d-%d of %d",
                 spec.model, size, steps, carried.epoch + 1, cfg.epochs, cfg.epochs)
    history = _fit(spec, tf, prepared.model, carried.epoch, chain, steps, rank, size)
    return history, chain, watchers


def _fit_elastic(spec: WorkerSpec, tf, hvd, hvd_tf, prepared: _Prepared, carried: _Carried,
                 retrying) -> tuple[Any, list, _Watchers]:
    """``launch.elastic``: ``_fit_once`` under ``hvd.elastic.run``. When a worker is lost,
    or a host joins, every rank goes back to the last committed epoch end (weights, optimiser,
    best epoch, early stopping) and fits on at the new size, in the same MLflow run. Rank 0
    records each membership as the run's ``workers`` metric at the epoch it starts from."""
    from pipeline.tracking import keys, runs

    model = prepared.model
    model.optimizer.build(model.trainable_variables)  # the slots exist on a joining rank too
    state = hvd.elastic.KerasState(model, epoch=carried.epoch, best=carried.best,
                                   early_stopping=carried.early_stopping, logs={})

    @hvd.elastic.run
    def attempt(state):
        if hvd.rank() == 0:
            write_lost_epoch_end(spec, state, model, retrying)
            log.info("elastic: %d worker(s) from epoch %d on", hvd.size(), state.epoch + 1)
            retrying("the number of workers", runs.log_metrics, spec.tracker, spec.run_id,
                     {keys.WORKERS: hvd.size()}, state.epoch)
        try:
            return _fit_once(spec, tf, hvd, hvd_tf, prepared,
                             _Carried(state.epoch, state.best, state.early_stopping), retrying,
                             state)
        except tf.errors.UnknownError as exc:  # Horovod's wrapper would swallow it
            if "Horovod" in str(exc):  # a lost peer: Horovod's to handle
                raise
            raise RuntimeError(f"training failed: {exc}") from exc

    fitted = attempt(state)
    os.environ["HOROVOD_RANK"] = str(hvd.rank())  # Horovod files this rank's result under it
    return fitted


def write_lost_epoch_end(spec: WorkerSpec, state, model, retrying) -> None:
    """Elastic mode, rank 0 at a (re)start: when the last saved epoch has no checkpoint, its
    rank 0 died during its epoch-end writes; write them now (the checkpoint, then the epoch's
    metrics), from the state the ranks went back to."""
    from pipeline.tracking import runs
    from pipeline.train import checkpoints

    last, point = state.epoch - 1, checkpoints.latest(spec.checkpoint_root)
    if not state.logs or (point is not None and point.epoch >= last):
        return
    log.info("elastic: writing epoch %d's checkpoint and metrics, lost with its rank 0",
             last + 1)
    checkpoints.save(checkpoints.Checkpoint(spec.checkpoint_root, last, state.logs,
                                            state.early_stopping, state.best),
                     model, model.optimizer)
    retrying(f"metrics of epoch {last + 1}", runs.log_metrics, spec.tracker, spec.run_id,
             state.logs, last)


def train_worker(spec: WorkerSpec) -> dict:
    """Train on this rank's shard; rank 0 checkpoints and records metrics and the model."""
    setup_logging()
    import horovod.tensorflow as hvd_tf
    import horovod.tensorflow.keras as hvd
    import tensorflow as tf

    from pipeline.tracking.keras import disable_autolog, start_system_metrics
    from pipeline.tracking.retry import Retrying

    disable_autolog()
    hvd.init()
    _configure_devices(tf, hvd, spec.launch.threads_per_worker)
    planned = steps_per_epoch(spec.manifest.splits["train"].rows, spec.train.batch_size,
                              spec.train.workers)  # what the schedule counts on
    prepared = _compiled_model(spec, tf, hvd, planned)
    start_step, resumed = int(prepared.model.optimizer.iterations.numpy()), spec.resume_from
    carried = _Carried(prepared.initial_epoch, resumed.best if resumed else {},
                       resumed.early_stopping if resumed else {})
    retrying = Retrying()
    monitor = start_system_metrics(spec.tracker, spec.run_id, resumed=resumed is not None
                                   ) if hvd.rank() == 0 else None
    fit = _fit_elastic if spec.launch.elastic else _fit_once
    try:
        history, chain, watchers = fit(spec, tf, hvd, hvd_tf, prepared, carried, retrying)
    finally:
        if monitor is not None:
            monitor.finish()
    return _outcome(spec, hvd, prepared.model, history, chain, watchers, start_step, retrying)


def _outcome(spec: WorkerSpec, hvd, model, history, chain: list, watchers: _Watchers,
             start_step: int, retrying) -> dict:
    """Rank 0 logs the model (unless pruned); every rank reports what it did."""
    rank, keep_best = hvd.rank(), watchers.keep_best
    first = spec.resume_from.epoch + 1 if spec.resume_from else 0
    pruned_epoch = watchers.pruning.pruned_epoch if watchers.pruning else None
    if rank == 0 and pruned_epoch is None:  # a pruned trial's model is of no use
        _log_models(spec, model, history.history, retrying,
                    keep_best.confusion if keep_best and keep_best.confusion is not None
                    else watchers.validation.confusion)
    return {"rank": rank, "local_rank": hvd.local_rank(),
            "steps": _steps_run(model, start_step, chain),  # measured, not planned
            "initial_epoch": first, "epochs_run": history.epoch[-1] + 1 - first
            if history.epoch else 0,
            "mlflow_failures": retrying.failures, "best": keep_best.best if keep_best else {},
            "pruned_epoch": pruned_epoch,
            "history": {k: [float(v) for v in vs] for k, vs in history.history.items()}}
