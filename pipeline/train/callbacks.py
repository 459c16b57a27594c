"""Keras callbacks that run inside every worker: exact validation, the learning rate in the
logs, early stopping that survives a resume, a sweep trial's pruning, and rank 0's best epoch
and per-epoch checkpoint.

Order matters (Keras calls them in list order at an epoch end): the timer stops the clock,
validation adds ``val_*``, early stopping and the best epoch read them, the checkpoint records
them and the MLflow logger writes them.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import tensorflow as tf

from pipeline.datasets.reader import model_batches
from pipeline.errors import PipelineError
from pipeline.logs import Progress, format_duration
from pipeline.tracking.keys import lower_is_better
from pipeline.train import checkpoints
from pipeline.train.optim import make_loss
from pipeline.train.spec import TrialRef, WorkerSpec

log = logging.getLogger("pipeline.train.worker")


class ValidationCountError(PipelineError, RuntimeError):
    """The workers together read a different number of validation rows than the manifest says."""


class EpochTimer(tf.keras.callbacks.Callback):
    """First in the chain: the epoch's training time and throughput, before validation."""

    def __init__(self, samples_per_epoch: int) -> None:
        super().__init__()
        self._samples = samples_per_epoch
        self._started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self._started
        logs["epoch_time_s"] = elapsed
        logs["samples_per_s"] = self._samples / max(elapsed, 1e-9)


class ExactValidation(tf.keras.callbacks.Callback):
    """Each rank scores its validation shard once; sums are all-reduced across ranks."""

    def __init__(self, spec: WorkerSpec, hvd_tf) -> None:
        super().__init__()
        self._spec = spec
        self._hvd = hvd_tf
        self._loss = make_loss(spec.train.loss, summed=True)
        self.confusion = None  # the last epoch's counts: rows true label, columns predicted

    def on_epoch_end(self, epoch, logs=None):
        spec, hvd = self._spec, self._hvd
        classes = spec.manifest.num_classes
        loss_sum = 0.0
        confusion = np.zeros(classes * classes, np.float64)
        for inputs, labels in model_batches(spec.dataset_url, spec.manifest, "val",
                                            spec.train.batch_size, shard=hvd.rank(),
                                            shard_count=hvd.size()):
            probs = self.model(inputs, training=False)
            loss_sum += float(self._loss(tf.one_hot(labels, classes), probs))
            predicted = probs.numpy().argmax(axis=1)
            confusion += np.bincount(labels * classes + predicted, minlength=classes * classes)
        totals = hvd.allreduce(tf.constant(np.append(confusion, loss_sum), tf.float64),
                               op=hvd.Sum, name=f"val_totals_{epoch}").numpy()
        self.confusion = totals[:-1].reshape(classes, classes).astype(np.int64)
        seen, expected = int(self.confusion.sum()), spec.manifest.splits["val"].rows
        if seen != expected:
            raise ValidationCountError(f"validation read {seen} rows, the manifest of "
                                       f"{spec.dataset_url} says {expected}")
        logs["val_loss"] = totals[-1] / seen
        logs["val_accuracy"] = np.trace(self.confusion) / seen


class LearningRateInLogs(tf.keras.callbacks.Callback):
    """Adds the learning rate of the epoch's last step to the epoch's logs."""

    def __init__(self, schedule) -> None:
        super().__init__()
        self.schedule = schedule  # replaced by UnfreezeAfter with the fine-tuning one

    def on_epoch_end(self, epoch, logs=None):
        step = max(0, int(self.model.optimizer.iterations.numpy()) - 1)
        logs["learning_rate"] = float(self.schedule(step))


class UnfreezeAfter(tf.keras.callbacks.Callback):
    """At the start of epoch ``epoch`` (0-based): the frozen layers train again, with a new
    optimiser at the fine-tuning rate (the old one has no slots for them); the training step is
    traced anew, since it captured the trainable variables. Every rank does the same."""

    def __init__(self, epoch: int, layers: list, optimizer_factory, rate: LearningRateInLogs
                 ) -> None:
        super().__init__()
        self._epoch, self._layers, self._rate = epoch, layers, rate
        self._factory = optimizer_factory  # () -> (optimizer, schedule) of the fine-tuning
        self.steps_before = 0  # optimiser steps of the frozen phase in this process

    def on_epoch_begin(self, epoch, logs=None):
        if epoch != self._epoch:
            return
        for layer in self._layers:
            layer.trainable = True
        self.steps_before = int(self.model.optimizer.iterations.numpy())
        self.model.optimizer, self._rate.schedule = self._factory()
        self.model.train_function = self.model.make_train_function(force=True)
        log.info("epoch %d: %d frozen layers train again, at the fine-tuning rate", epoch + 1,
                 len(self._layers))


class ResumableEarlyStopping(tf.keras.callbacks.EarlyStopping):
    """Early stopping on ``val_loss`` whose best value and patience count carry over a resume.

    ``val_loss`` is all-reduced, so every rank decides to stop at the same epoch.
    """

    def __init__(self, patience: int, min_delta: float, state: dict[str, float]) -> None:
        super().__init__(monitor="val_loss", patience=patience, min_delta=min_delta)
        self._resumed = state

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._resumed:
            self.best = self._resumed["best"]
            self.wait = int(self._resumed["wait"])

    def state(self) -> dict[str, float]:
        return {"best": float(self.best), "wait": self.wait}


class KeepBestEpoch(tf.keras.callbacks.Callback):
    """Rank 0 only: the model ends training with the weights of the epoch whose ``monitor``
    value was best (``train.keep_best``), not the last epoch's. ``best`` carries over a resume
    (from the checkpoint, which keeps that epoch's folder)."""

    def __init__(self, monitor: str, root: str, resumed: dict, validation: ExactValidation
                 ) -> None:
        super().__init__()
        self._monitor, self._root, self._validation = monitor, root, validation
        self.best: dict = dict(resumed)  # epoch (0-based) and its logs
        self._weights = None  # the best epoch's, when it ran in this job
        self.confusion = None  # the best epoch's validation counts, when known

    def _improves(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if not self.best:
            return True
        best = self.best["logs"][self._monitor]
        return value < best if lower_is_better(self._monitor) else value > best

    def on_epoch_end(self, epoch, logs=None):
        if self._improves(float(logs[self._monitor])):
            self.best = {"epoch": epoch, "logs": {k: float(v) for k, v in logs.items()}}
            self._weights = self.model.get_weights()
            self.confusion = self._validation.confusion

    def on_train_end(self, logs=None):
        if self._weights is not None:
            self.model.set_weights(self._weights)
        elif self.best:  # before a resume: its checkpoint was kept for this
            self.confusion = checkpoints.restore_weights(
                checkpoints.Checkpoint(self._root, self.best["epoch"]), self.model)


class CheckpointEachEpoch(tf.keras.callbacks.Callback):
    """Rank 0 only: model, optimiser state, the epoch's metrics, early-stopping state and the
    best epoch so far."""

    def __init__(self, root: str, early_stopping: ResumableEarlyStopping | None,
                 keep_best: KeepBestEpoch | None, validation: ExactValidation) -> None:
        super().__init__()
        self._root = root
        self._early_stopping = early_stopping
        self._keep_best = keep_best
        self._validation = validation

    def on_epoch_end(self, epoch, logs=None):
        state = self._early_stopping.state() if self._early_stopping else {}
        scalars = {k: float(v) for k, v in (logs or {}).items()}
        best = self._keep_best.best if self._keep_best else {}
        checkpoint = checkpoints.Checkpoint(self._root, epoch, scalars, state, best)
        checkpoints.save(checkpoint, self.model, self.model.optimizer,
                         self._validation.confusion)


class PruneAtEpochEnd(tf.keras.callbacks.Callback):
    """Every rank, in a tpe sweep's trial: rank 0 reports the epoch's validation metric to the
    trial and asks its study's pruner; the answer is broadcast, so all ranks stop together.
    When rank 0 cannot reach the study (its file is not on rank 0's machine), nothing is
    pruned and a warning says so."""

    def __init__(self, trial: TrialRef, hvd_tf) -> None:
        super().__init__()
        self._trial, self._hvd = trial, hvd_tf
        self._reporter = None
        self.pruned_epoch: int | None = None  # 1-based

    def on_train_begin(self, logs=None):
        if self._hvd.rank() != 0:
            return
        from pipeline.train.study import Reporter, StudyUnreachableError

        try:
            self._reporter = Reporter(self._trial)
        except StudyUnreachableError as exc:
            log.warning("trial %d is not pruned: %s", self._trial.trial_id, exc)

    def on_epoch_end(self, epoch, logs=None):
        prune = self._reporter is not None and self._reporter.should_prune(
            epoch, float(logs[self._trial.metric]))
        if self._hvd.broadcast_object(prune, root_rank=0, name=f"prune_{epoch}"):
            self.pruned_epoch = epoch + 1
            self.model.stop_training = True
            if self._hvd.rank() == 0:
                log.info("epoch %d: %s %.4f, the sweep's %s pruner stops this trial", epoch + 1,
                         self._trial.metric, logs[self._trial.metric], self._trial.pruner)


class SaveElasticState(tf.keras.callbacks.Callback):
    """Elastic mode, every rank, after the epoch's last collective (before rank 0 checkpoints
    and logs): the finished epoch, early stopping's count and rank 0's best epoch into
    Horovod's state, which keeps a copy of the weights and optimiser state. A rank lost after
    this point sends the others back here, not to the epoch's start: no epoch is logged
    twice."""

    def __init__(self, state, broadcast_object, early_stopping: ResumableEarlyStopping | None,
                 keep_best: KeepBestEpoch | None, tracks_best: bool) -> None:
        super().__init__()
        self._state, self._broadcast = state, broadcast_object
        self._early_stopping, self._keep_best = early_stopping, keep_best
        self._tracks_best = tracks_best  # train.keep_best: rank 0 holds it, the others learn it

    def on_epoch_end(self, epoch, logs=None):
        state = self._state
        if self._tracks_best:
            state.best = self._broadcast(self._keep_best.best if self._keep_best else None,
                                         root_rank=0, name=f"best_{epoch}")
        state.epoch = epoch + 1
        state.early_stopping = self._early_stopping.state() if self._early_stopping else {}
        state.logs = {k: float(v) for k, v in (logs or {}).items()}
        state.save()


class CheckHostUpdates(tf.keras.callbacks.Callback):
    """Elastic mode, every rank, last in the chain: where a host that joined or was lost
    interrupts the fit, all ranks together (not after the last epoch or an early stop:
    training is over)."""

    def __init__(self, state) -> None:
        super().__init__()
        self._state = state

    def on_epoch_end(self, epoch, logs=None):
        if not self.model.stop_training and epoch + 1 < self.params["epochs"]:
            self._state.check_host_updates()


class StepProgress(tf.keras.callbacks.Callback):
    """Rank 0 only: how far the epoch is (step/steps, samples/s over all workers, the epoch's
    ETA). A worker's stderr is a pipe that Horovod forwards line by line with a ``[rank]``
    prefix, so these are plain log lines, at most one every ``every_s`` seconds."""

    def __init__(self, epochs: int, steps: int, global_batch: int, every_s: float = 10.0) -> None:
        super().__init__()
        self._supports_tf_logs = True  # the logs are not read: no sync to numpy at every step
        self._epochs, self._steps, self._global_batch = epochs, steps, global_batch
        self._every_s = every_s
        self._progress: Progress | None = None
        self._started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()
        self._progress = Progress(f"epoch {epoch + 1}/{self._epochs}", "steps",
                                  every_s=self._every_s, min_s=self._every_s,
                                  logger=logging.getLogger(__name__))

    def on_train_batch_end(self, batch, logs=None):
        done, elapsed = batch + 1, max(time.perf_counter() - self._started, 1e-9)
        eta = (self._steps - done) * elapsed / done
        self._progress.update(done, self._steps, f"{done * self._global_batch / elapsed:,.0f} "
                                                 f"samples/s, epoch ETA {format_duration(eta)}")

    def on_epoch_end(self, epoch, logs=None):
        if self._progress is not None:
            self._progress.close()
