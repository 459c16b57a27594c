"""What the model is trained with: loss, optimiser and the learning-rate schedule.

Horovod's rule: with N workers the global batch is N times larger, so the learning rate is
scaled by N, reached by a linear warm-up (Goyal et al., 2017). The schedule is a function of
the optimiser's step counter, so a resumed run continues on the same curve.
"""

from __future__ import annotations

import functools
import math

from pipeline.config import TrainConfig


def make_loss(name: str, summed: bool = False):
    """The Keras loss over one-hot labels and softmax outputs (``summed``: sum over the batch)."""
    import tensorflow as tf

    losses = tf.keras.losses
    reduction = losses.Reduction.SUM if summed else losses.Reduction.AUTO
    # two softmax columns against one-hot labels: binary cross-entropy of the positive class
    loss = {"categorical_crossentropy": losses.CategoricalCrossentropy,
            "binary_crossentropy": losses.BinaryCrossentropy,
            "mse": losses.MeanSquaredError}[name]
    return loss(reduction=reduction)


def schedule_config(cfg: TrainConfig, workers: int, steps_per_epoch: int) -> dict:
    """The schedule's numbers, in optimiser steps."""
    return {"name": cfg.schedule.name, "base": cfg.learning_rate,
            "peak": cfg.learning_rate * workers,
            "warmup_steps": cfg.schedule.warmup_epochs * steps_per_epoch,
            "total_steps": cfg.epochs * steps_per_epoch,
            "decay_steps": cfg.schedule.decay_every_epochs * steps_per_epoch,
            "decay_rate": cfg.schedule.decay_rate}


@functools.cache
def _schedule_class():
    import tensorflow as tf

    @tf.keras.utils.register_keras_serializable(package="pipeline")
    class WarmupSchedule(tf.keras.optimizers.schedules.LearningRateSchedule):
        """Linear warm-up from ``base`` to ``peak``, then constant, cosine to 0, or steps."""

        def __init__(self, name: str, base: float, peak: float, warmup_steps: float,
                     total_steps: float, decay_steps: float, decay_rate: float) -> None:
            self.config = {"name": name, "base": base, "peak": peak,
                           "warmup_steps": warmup_steps, "total_steps": total_steps,
                           "decay_steps": decay_steps, "decay_rate": decay_rate}

        def __call__(self, step):
            c = self.config
            step = tf.cast(step, tf.float32)
            warmup = tf.constant(float(c["warmup_steps"]))
            warming = c["base"] + (c["peak"] - c["base"]) * step / tf.maximum(warmup, 1.0)
            if c["name"] == "cosine":
                span = max(1.0, c["total_steps"] - c["warmup_steps"])
                done = tf.minimum(1.0, (step - warmup) / span)
                after = c["peak"] * 0.5 * (1.0 + tf.cos(math.pi * done))
            elif c["name"] == "step":
                after = c["peak"] * c["decay_rate"] ** tf.floor(step / c["decay_steps"])
            else:
                after = tf.constant(float(c["peak"]))
            return tf.where(step < warmup, warming, after)

        def get_config(self) -> dict:
            return dict(self.config)

    return WarmupSchedule


def make_schedule(cfg: TrainConfig, workers: int, steps_per_epoch: int):
    """The Keras learning-rate schedule for this run (serialisable, so Horovod can rewrap it)."""
    return _schedule_class()(**schedule_config(cfg, workers, steps_per_epoch))


def fine_tune_config(cfg: TrainConfig) -> TrainConfig:
    """The settings of the epochs after ``train.freeze_epochs``: the fine-tuning rate
    (``learning_rate / 10`` when unset), the schedule over the remaining epochs, no new
    warm-up (the model is trained already)."""
    return cfg.model_copy(update={
        "learning_rate": cfg.fine_tune_learning_rate or cfg.learning_rate / 10,
        "epochs": cfg.epochs - cfg.freeze_epochs,
        "schedule": cfg.schedule.model_copy(update={"warmup_epochs": 0})})


def make_optimizer(cfg: TrainConfig, schedule):
    import tensorflow as tf

    optimizers = tf.keras.optimizers
    if cfg.optimizer == "momentum":
        return optimizers.SGD(learning_rate=schedule, momentum=cfg.momentum or 0.9)
    return {"sgd": optimizers.SGD, "adam": optimizers.Adam,
            "rmsprop": optimizers.RMSprop}[cfg.optimizer](learning_rate=schedule)
