"""The per-worker training function: runs in every Horovod process (the remote side).

Each rank reads its own Petastorm shard endlessly and runs the same number of steps per
epoch, so no rank waits for another at an epoch end. Validation reads every row once.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from pipeline.datasets.reader import read_batches, tf_dataset, training_stream
from pipeline.errors import PipelineError
from pipeline.logs import setup_logging
from pipeline.train.features import as_model_input, feature_field, tf_model_input
from pipeline.train.model import build_model, make_optimizer
from pipeline.train.spec import WorkerSpec

log = logging.getLogger("pipeline.train.worker")


class ValidationCountError(PipelineError, RuntimeError):
    """The workers together read a different number of validation rows than the manifest says."""


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


def _exact_validation_callback(tf, hvd_tf, spec: WorkerSpec, rank: int, size: int):
    expected = spec.manifest.splits["val"].rows
    field = feature_field(spec.manifest)

    class ExactValidation(tf.keras.callbacks.Callback):
        """Each rank scores its validation shard once; sums are all-reduced across ranks."""

        def on_epoch_end(self, epoch, logs=None):
            loss_sum = correct = seen = 0.0
            for batch in read_batches(spec.dataset_url, "val", (field, "label"),
                                      spec.train.batch_size, shard=rank, shard_count=size):
                inputs = as_model_input(spec.manifest, batch[field])
                probs = self.model(inputs, training=False).numpy()
                labels = batch["label"].astype("int64")
                picked = probs[range(len(labels)), labels].clip(1e-7, 1.0)
                loss_sum += float(-np.log(picked).sum())
                correct += float((probs.argmax(axis=1) == labels).sum())
                seen += len(labels)
            totals = hvd_tf.allreduce(tf.constant([loss_sum, correct, seen], tf.float64),
                                      op=hvd_tf.Sum, name=f"val_totals_{epoch}").numpy()
            if int(totals[2]) != expected:
                raise ValidationCountError(
                    f"validation read {int(totals[2])} rows, the manifest of "
                    f"{spec.dataset_url} says {expected}")
            logs["val_loss"] = totals[0] / totals[2]
            logs["val_accuracy"] = totals[1] / totals[2]

    return ExactValidation()


def train_worker(spec: WorkerSpec) -> dict:
    """Train on this rank's shard; rank 0 records metrics and the model in MLflow."""
    setup_logging()
    import horovod.tensorflow as hvd_tf
    import horovod.tensorflow.keras as hvd
    import tensorflow as tf

    from pipeline.tracking.keras import MlflowEpochLogger, log_keras_model

    hvd.init()
    rank, size = hvd.rank(), hvd.size()
    cfg, manifest = spec.train, spec.manifest
    _configure_devices(tf, hvd, cfg.threads_per_worker)
    tf.keras.utils.set_random_seed(cfg.seed + rank)

    model = build_model(spec.model, manifest)
    field = feature_field(manifest)
    # Horovod's rule: scale the learning rate by the number of workers
    optimizer = hvd.DistributedOptimizer(make_optimizer(cfg.optimizer, cfg.learning_rate * size))
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    steps = steps_per_epoch(manifest.splits["train"].rows, cfg.batch_size, size)
    callbacks = [
        hvd.callbacks.BroadcastGlobalVariablesCallback(0),
        hvd.callbacks.MetricAverageCallback(),
        _exact_validation_callback(tf, hvd_tf, spec, rank, size),
    ]
    if rank == 0:
        callbacks.append(MlflowEpochLogger(spec.tracking_uri, spec.run_id, cfg.epochs, steps))
        log.info("training %s on %d workers, %d steps per epoch, %d epochs", spec.model, size,
                 steps, cfg.epochs)

    with training_stream(spec.dataset_url, "train", (field, "label"), shard=rank,
                         shard_count=size, seed=cfg.seed + rank,
                         reader_workers=cfg.reader_workers) as reader:
        dataset = tf_dataset(reader).map(
            lambda row: (tf_model_input(tf, manifest, getattr(row, field)), row.label))
        if cfg.shuffle_buffer:
            dataset = dataset.shuffle(cfg.shuffle_buffer, seed=cfg.seed + rank)
        dataset = dataset.batch(cfg.batch_size).prefetch(tf.data.AUTOTUNE)
        history = model.fit(dataset, steps_per_epoch=steps, epochs=cfg.epochs,
                            callbacks=callbacks, verbose=0)

    if rank == 0:
        example = next(read_batches(spec.dataset_url, "val", (field,), 4))[field]
        log_keras_model(spec.tracking_uri, spec.run_id, model,
                        as_model_input(manifest, example))
    return {"rank": rank, "steps": steps * len(history.history["loss"]),
            "history": {k: [float(v) for v in vs] for k, vs in history.history.items()}}
