"""Rank-0 MLflow logging from inside a Horovod worker: per-epoch metrics and the final model."""

from __future__ import annotations

import io
import logging
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np

from pipeline.errors import first_line
from pipeline.tracking import keys
from pipeline.tracking.requirements import pip_requirements
from pipeline.tracking.retry import MODEL_WRITE, Retrying
from pipeline.tracking.tracker import Tracker

log = logging.getLogger("pipeline.train")


def _keras_callback_base():
    import tensorflow as tf

    return tf.keras.callbacks.Callback


class MlflowEpochLogger(_keras_callback_base()):
    """Logs every epoch's metrics to an existing run and a progress line for people; with
    ``epoch_models``, also the epoch's weights as an MLflow logged model (``epoch-N``, one HDF5
    file) that the metrics are linked to, so the UI shows which weights scored what."""

    def __init__(self, tracker: Tracker, run_id: str, epochs: int, steps: int,
                 retrying: Retrying, epoch_models: bool = True) -> None:
        super().__init__()
        self._tracker = tracker  # its experiment id is read in the retried call, not here
        self._client = tracker.client
        self._epoch_models = epoch_models
        self._retrying = retrying
        self._run_id = run_id
        self._epochs = epochs
        self._steps = steps

    def _log_epoch_model(self, epoch: int, logged_ids: list[str]) -> None:
        logged = self._client.create_logged_model(
            self._tracker.experiment_id, name=f"epoch-{epoch + 1}", source_run_id=self._run_id,
            model_type=keys.EPOCH_MODEL_TYPE, tags={"epoch": str(epoch + 1)})
        with tempfile.TemporaryDirectory(prefix="pipeline-epoch-") as scratch:
            self.model.save_weights(str(Path(scratch, keys.EPOCH_MODEL_WEIGHTS)))
            self._client.log_model_artifacts(logged.model_id, scratch)
        self._client.finalize_logged_model(logged.model_id, "READY")
        logged_ids.append(logged.model_id)

    def on_epoch_end(self, epoch, logs=None):
        from mlflow.entities import Metric

        logs = logs or {}
        now_ms = int(time.time() * 1000)
        values = {k: float(v) for k, v in logs.items() if np.isscalar(v) or np.ndim(v) == 0}
        logged_ids: list[str] = []
        if self._epoch_models:
            self._retrying(f"the weights of epoch {epoch + 1}", self._log_epoch_model, epoch,
                           logged_ids)
        model_id = logged_ids[-1] if logged_ids else None
        metrics = [Metric(key, value, now_ms, epoch, model_id=model_id)
                   for key, value in sorted(values.items())]
        self._retrying(f"metrics of epoch {epoch + 1}", self._client.log_batch, self._run_id,
                       metrics=metrics)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(values.items())
                          if k not in ("epoch_time_s", "samples_per_s"))
        log.info("epoch %d/%d (%d steps, %.1fs, %.0f samples/s): %s", epoch + 1, self._epochs,
                 self._steps, values.get("epoch_time_s", 0.0), values.get("samples_per_s", 0.0),
                 shown)


def disable_autolog() -> None:
    """Workers log only through our callbacks (rank 0): one run per job, no autologged runs."""
    import mlflow

    mlflow.autolog(disable=True)


def start_system_metrics(tracker: Tracker, run_id: str, resumed: bool,
                         interval_s: float = 2.0):
    """MLflow's CPU, memory (and GPU) sampler for the run, or None if it cannot start; call
    ``.finish()`` on the result. ``resumed``: continue the run's earlier steps."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    try:
        monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s,
                                       tracking_uri=tracker.uri, resume_logging=resumed)
        monitor.start()
    except Exception as exc:  # a missing sampler must not stop training
        log.warning("MLflow system metrics are off: %s", first_line(exc))
        return None
    return monitor


def _run_history(client, run_id: str, keras_history: dict[str, list[float]]
                 ) -> dict[str, list[float]]:
    """The whole run's curves from the store (a resumed run's Keras history starts late);
    Keras' own history if the store cannot answer."""
    try:
        return {key: [m.value for m in sorted(client.get_metric_history(run_id, key),
                                               key=lambda m: m.step)]
                for key in ("loss", "val_loss", "accuracy", "val_accuracy")}
    except Exception as exc:  # the report is still worth drawing from what we have
        log.warning("MLflow: metric history unavailable (%s); curves of this job only",
                    first_line(exc))
        return keras_history


def log_outcome(tracker: Tracker, run_id: str, model, example: np.ndarray,
                confusion: np.ndarray, labels: list[str], keras_history: dict[str, list[float]],
                retrying: Retrying) -> bool:
    """After training: the validation report, the curves of the whole run, then the model
    (True when it is logged)."""
    from pipeline.tracking.reports import log_report

    client = tracker.client
    history = _run_history(client, run_id, keras_history)
    retrying("the validation report", log_report, client, run_id, confusion, labels, "val",
             history)
    return retrying(MODEL_WRITE, log_keras_model, tracker, run_id, model, example)


def log_keras_model(tracker: Tracker, run_id: str, model, example: np.ndarray) -> None:
    """Log the model with its signature and an input example into the run."""
    import mlflow
    import mlflow.tensorflow
    from mlflow.models import infer_signature

    signature = infer_signature(example, model.predict(example, verbose=0))
    # redirect: MLflow validates the input example with model.predict and its progress bar
    with tracker.active(), mlflow.start_run(run_id=run_id), redirect_stdout(io.StringIO()):
        mlflow.tensorflow.log_model(model, name=keys.MODEL_ARTIFACT, signature=signature,
                                    input_example=example[:1],
                                    pip_requirements=pip_requirements(),
                                    keras_model_kwargs={"include_optimizer": False})
