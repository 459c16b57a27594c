"""The per-worker training function: runs in every Horovod process (the remote side).

Each rank reads its own Petastorm shard endlessly and runs the same number of steps per
epoch, so no rank waits for another at an epoch end, however uneven the shards. Validation
reads every row once. Rank 0 checkpoints every epoch and writes to MLflow.
"""

from __future__ import annotations

import logging
import math

from pipeline import storage
from pipeline.datasets.manifest import VOCAB_NAME
from pipeline.datasets.reader import model_batches, read_batches
from pipeline.logs import setup_logging
from pipeline.train.inputs import training_examples
from pipeline.train.model import build_model
from pipeline.train.optim import make_loss, make_optimizer, make_schedule
from pipeline.train.spec import WorkerSpec

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


def _callbacks(spec: WorkerSpec, hvd, validation, schedule, steps: int, retrying,
               keep_best) -> list:
    from pipeline.train import callbacks as cb

    cfg, rank = spec.train, hvd.rank()
    chain = [cb.EpochTimer(steps * cfg.batch_size * hvd.size()),
             hvd.callbacks.BroadcastGlobalVariablesCallback(0),
             hvd.callbacks.MetricAverageCallback(),
             validation,
             cb.LearningRateInLogs(schedule)]
    early_stopping = None
    if cfg.early_stopping.patience:
        resumed = spec.resume_from.early_stopping if spec.resume_from else {}
        early_stopping = cb.ResumableEarlyStopping(cfg.early_stopping.patience,
                                                   cfg.early_stopping.min_delta, resumed)
        chain.append(early_stopping)
    if rank == 0:
        from pipeline.tracking.keras import MlflowEpochLogger

        chain += [keep_best] if keep_best else []
        chain.append(cb.CheckpointEachEpoch(spec.checkpoint_root, early_stopping, keep_best,
                                            validation))
        chain.append(MlflowEpochLogger(spec.tracker, spec.run_id, cfg.epochs, steps, retrying,
                                       spec.epoch_models))
        chain.append(cb.StepProgress(cfg.epochs, steps, cfg.batch_size * hvd.size()))
    return chain


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


class WarmStartError(RuntimeError):
    """The model to start from has other layers or shapes than the model being trained."""


def _warm_start(model, spec: WorkerSpec) -> None:
    """Copy the weights of a logged model (e.g. the champion) into ``model``, on every rank."""
    from pipeline.tracking.models import load_keras_model

    source = load_keras_model(spec.tracker, spec.warm_start_uri)
    try:
        model.set_weights(source.get_weights())
    except ValueError as exc:
        raise WarmStartError(f"cannot warm-start from {spec.warm_start_uri}: its layers differ "
                             f"from the model configured in train.* ({exc})") from None
    log.info("weights start from %s", spec.warm_start_uri)


def _compiled_model(spec: WorkerSpec, tf, hvd, steps: int):
    """(model compiled with Horovod's optimizer, its schedule, the first epoch to run): from
    the seed, the warm-start model or the checkpoint to resume."""
    from pipeline.train import checkpoints

    cfg = spec.train
    # the same initial weights on every rank (Horovod broadcasts only after the first step);
    # the shards are shuffled with per-rank seeds
    tf.keras.utils.set_random_seed(cfg.seed)
    schedule = make_schedule(cfg, hvd.size(), steps)
    model = build_model(spec.model, spec.manifest, cfg)
    model.compile(optimizer=hvd.DistributedOptimizer(make_optimizer(cfg, schedule)),
                  loss=make_loss(cfg.loss),
                  metrics=[tf.keras.metrics.CategoricalAccuracy(name="accuracy")])
    if spec.warm_start_uri is not None and spec.resume_from is None:
        _warm_start(model, spec)
    if spec.resume_from is None:
        return model, schedule, 0
    checkpoints.restore(spec.resume_from, model, model.optimizer)
    return model, schedule, spec.resume_from.epoch + 1


def _fit(spec: WorkerSpec, tf, model, initial_epoch: int, callbacks: list, steps: int, rank: int,
         size: int):
    """``model.fit`` on this rank's endless shard, ``steps`` batches per epoch."""
    cfg = spec.train
    with training_examples(tf, spec.dataset_url, spec.manifest, rank, size,
                           seed=cfg.seed + rank + 1000 * initial_epoch,
                           reader_workers=spec.launch.reader_workers) as examples:
        if cfg.shuffle_buffer:
            examples = examples.shuffle(cfg.shuffle_buffer, seed=cfg.seed + rank)
        batches = examples.batch(cfg.batch_size).prefetch(tf.data.AUTOTUNE)
        return model.fit(batches, steps_per_epoch=steps, epochs=cfg.epochs,
                         initial_epoch=initial_epoch, callbacks=callbacks, verbose=0)


def train_worker(spec: WorkerSpec) -> dict:
    """Train on this rank's shard; rank 0 checkpoints and records metrics and the model."""
    setup_logging()
    import horovod.tensorflow as hvd_tf
    import horovod.tensorflow.keras as hvd
    import tensorflow as tf

    from pipeline.tracking.keras import disable_autolog, start_system_metrics
    from pipeline.tracking.retry import Retrying
    from pipeline.train.callbacks import ExactValidation, KeepBestEpoch

    disable_autolog()
    hvd.init()
    rank, size, cfg = hvd.rank(), hvd.size(), spec.train
    _configure_devices(tf, hvd, spec.launch.threads_per_worker)
    steps = steps_per_epoch(spec.manifest.splits["train"].rows, cfg.batch_size, size)
    model, schedule, initial_epoch = _compiled_model(spec, tf, hvd, steps)
    start_step = int(model.optimizer.iterations.numpy())
    if rank == 0:
        log.info("training %s on %d workers: %d steps per epoch, epochs %d-%d of %d",
                 spec.model, size, steps, initial_epoch + 1, cfg.epochs, cfg.epochs)
    validation, retrying = ExactValidation(spec, hvd_tf), Retrying()
    keep_best = (KeepBestEpoch(cfg.keep_best, spec.checkpoint_root, spec.resume_from.best
                               if spec.resume_from else {}, validation)
                 if rank == 0 and cfg.keep_best else None)
    monitor = start_system_metrics(spec.tracker, spec.run_id, resumed=spec.resume_from
                                   is not None) if rank == 0 else None
    try:
        history = _fit(spec, tf, model, initial_epoch,
                       _callbacks(spec, hvd, validation, schedule, steps, retrying, keep_best),
                       steps, rank, size)
    finally:
        if monitor is not None:
            monitor.finish()
    steps_run = int(model.optimizer.iterations.numpy()) - start_step  # measured, not planned
    if rank == 0:
        _log_models(spec, model, history.history, retrying,
                    keep_best.confusion if keep_best and keep_best.confusion is not None
                    else validation.confusion)
    return {"rank": rank, "local_rank": hvd.local_rank(), "steps": steps_run,
            "initial_epoch": initial_epoch, "mlflow_failures": retrying.failures,
            "best": keep_best.best if keep_best else {},
            "history": {k: [float(v) for v in vs] for k, vs in history.history.items()}}
