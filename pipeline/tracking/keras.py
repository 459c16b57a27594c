"""Rank-0 MLflow logging from inside a Horovod worker: per-epoch metrics and the final model."""

from __future__ import annotations

import io
import logging
import time
from contextlib import redirect_stdout

import numpy as np

log = logging.getLogger("pipeline.train")


def _keras_callback_base():
    import tensorflow as tf

    return tf.keras.callbacks.Callback


class MlflowEpochLogger(_keras_callback_base()):
    """Logs every epoch's metrics to an existing run and a progress line for people."""

    def __init__(self, tracking_uri: str, run_id: str, epochs: int, steps: int,
                 global_batch: int) -> None:
        super().__init__()
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=tracking_uri)
        self._run_id = run_id
        self._epochs = epochs
        self._steps = steps
        self._global_batch = global_batch
        self._started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        from mlflow.entities import Metric

        logs = logs or {}
        now_ms = int(time.time() * 1000)
        elapsed = time.monotonic() - self._started
        values = {k: float(v) for k, v in logs.items() if np.isscalar(v) or np.ndim(v) == 0}
        values["epoch_time_s"] = elapsed
        values["samples_per_s"] = self._steps * self._global_batch / max(elapsed, 1e-9)
        self._client.log_batch(self._run_id, metrics=[
            Metric(key, value, now_ms, epoch) for key, value in sorted(values.items())])
        log.info("epoch %d/%d (%d steps, %.1fs): %s", epoch + 1, self._epochs, self._steps,
                 elapsed, ", ".join(f"{k} {v:.4f}" for k, v in sorted(values.items())
                                    if k not in ("epoch_time_s", "samples_per_s")))


def log_keras_model(tracking_uri: str, run_id: str, model, example: np.ndarray) -> None:
    """Log the model with its signature and an input example into the run."""
    import mlflow
    import mlflow.tensorflow
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(tracking_uri)
    signature = infer_signature(example, model.predict(example, verbose=0))
    # redirect: MLflow validates the input example with model.predict and its progress bar
    with mlflow.start_run(run_id=run_id), redirect_stdout(io.StringIO()):
        mlflow.tensorflow.log_model(model, name="model", signature=signature,
                                    input_example=example[:1],
                                    keras_model_kwargs={"include_optimizer": False})
