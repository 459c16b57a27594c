"""Rank-0 MLflow logging from inside a Horovod worker: per-epoch metrics and the final model."""

from __future__ import annotations

import io
import logging
import time
from contextlib import redirect_stdout

import numpy as np

from pipeline.tracking.retry import Retrying

log = logging.getLogger("pipeline.train")


def _keras_callback_base():
    import tensorflow as tf

    return tf.keras.callbacks.Callback


class MlflowEpochLogger(_keras_callback_base()):
    """Logs every epoch's metrics to an existing run and a progress line for people."""

    def __init__(self, tracking_uri: str, run_id: str, epochs: int, steps: int,
                 retrying: Retrying) -> None:
        super().__init__()
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=tracking_uri)
        self._retrying = retrying
        self._run_id = run_id
        self._epochs = epochs
        self._steps = steps

    def on_epoch_end(self, epoch, logs=None):
        from mlflow.entities import Metric

        logs = logs or {}
        now_ms = int(time.time() * 1000)
        values = {k: float(v) for k, v in logs.items() if np.isscalar(v) or np.ndim(v) == 0}
        metrics = [Metric(key, value, now_ms, epoch) for key, value in sorted(values.items())]
        self._retrying(f"metrics of epoch {epoch + 1}", self._client.log_batch, self._run_id,
                       metrics=metrics)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(values.items())
                          if k not in ("epoch_time_s", "samples_per_s"))
        log.info("epoch %d/%d (%d steps, %.1fs, %.0f samples/s): %s", epoch + 1, self._epochs,
                 self._steps, values.get("epoch_time_s", 0.0), values.get("samples_per_s", 0.0),
                 shown)


def start_system_metrics(tracking_uri: str, run_id: str, interval_s: float = 2.0):
    """MLflow's CPU, memory (and GPU) sampler for the run; call ``.finish()`` on the result."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s,
                                   tracking_uri=tracking_uri)
    monitor.start()
    return monitor


def log_outcome(tracking_uri: str, run_id: str, model, example: np.ndarray,
                confusion: np.ndarray, labels: list[str], retrying: Retrying) -> None:
    """After training: the validation report, the curves of the whole run, then the model."""
    from mlflow.tracking import MlflowClient

    from pipeline.tracking.reports import log_report

    client = MlflowClient(tracking_uri=tracking_uri)
    # from the store, not Keras: a resumed run's curves start at its first epoch
    history = {key: [m.value for m in sorted(client.get_metric_history(run_id, key),
                                              key=lambda m: m.step)]
               for key in ("loss", "val_loss", "accuracy", "val_accuracy")}
    retrying("the validation report", log_report, client, run_id, confusion, labels, "val",
             history)
    retrying("the model", log_keras_model, tracking_uri, run_id, model, example)


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
