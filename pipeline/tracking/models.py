"""Logged models: loading them, what they were trained on, and the rule that decides whether a
model fits a dataset version (same kind, labels and vocabulary)."""

from __future__ import annotations

import io
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np

from pipeline import storage
from pipeline.datasets.manifest import VOCAB_NAME, Manifest
from pipeline.errors import PipelineError, first_line
from pipeline.tracking import keys
from pipeline.tracking.registry import RegistryError
from pipeline.tracking.tracker import Tracker

Predict = Callable[[np.ndarray], np.ndarray]


class ModelMismatchError(PipelineError, ValueError):
    """The model does not take this dataset's inputs or does not predict its classes."""


class TrainingInputsError(PipelineError, LookupError):
    """The model's training run holds no dataset manifest: its preprocessing is unknown."""


def quiet_predict(model) -> Predict:
    """A pyfunc model's ``predict`` without the progress bar Keras prints on every call."""

    def predict(inputs):
        with redirect_stdout(io.StringIO()):
            return model.predict(inputs)

    return predict


def keras_predict(model, batch_rows: int = 1024) -> Predict:
    """A loaded Keras model's ``predict``, ``batch_rows`` at a time through ``predict_on_batch``:
    no input pipeline nor progress bar per call (robustness makes dozens of calls)."""

    def predict(inputs):
        return np.concatenate([np.asarray(model.predict_on_batch(inputs[at:at + batch_rows]))
                               for at in range(0, max(len(inputs), 1), batch_rows)])

    return predict


def keras_folder(model_dir: str) -> str:
    """The Keras model in a downloaded model folder: inside a raw-input model, or the folder
    itself (a Keras model, as logged and registered before raw-input models existed)."""
    inner = Path(model_dir, "artifacts", keys.RAW_MODEL_KERAS)
    return str(inner) if (inner / "MLmodel").is_file() else model_dir


def _download(tracker: Tracker, model_uri: str, dest: str | None = None) -> str:
    """The model's folder, downloaded into ``dest`` (default: a scratch folder); a clear error
    if it cannot be."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        with tracker.active():
            return mlflow.artifacts.download_artifacts(
                artifact_uri=model_uri, dst_path=dest or storage.scratch_dir("pipeline-model-"))
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"cannot load model {model_uri}: {first_line(exc)}") from None


def load_predictor(tracker: Tracker, model_uri: str) -> Predict:
    """The tensor model's ``predict`` (inputs -> class probabilities), from any model URI."""
    from mlflow.exceptions import MlflowException

    folder = _download(tracker, model_uri)
    try:
        return load_local_predictor(folder)
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"cannot load model {model_uri}: {first_line(exc)}") from None


def load_local_predictor(path: str) -> Predict:
    """The tensor ``predict`` of a model folder already on this machine (e.g. shipped to a
    Spark task)."""
    import mlflow

    return quiet_predict(mlflow.pyfunc.load_model(keras_folder(path)))


def load_keras_model(tracker: Tracker, model_uri: str):
    """The Keras model inside a logged model (e.g. the champion a warm start copies)."""
    import mlflow.tensorflow
    from mlflow.exceptions import MlflowException

    folder = _download(tracker, model_uri)
    try:
        return mlflow.tensorflow.load_model(keras_folder(folder))
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"cannot load model {model_uri}: {first_line(exc)}") from None


def model_run(tracker: Tracker, model_uri: str) -> str:
    """The id of the training run that logged the model (read from its ``MLmodel``, fetched
    into a scratch folder: ``get_model_info`` would leave a temporary folder per call)."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    try:
        with tracker.active():
            mlmodel = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{model_uri.rstrip('/')}/MLmodel",
                dst_path=storage.scratch_dir("pipeline-model-"))
            run_id = Model.load(mlmodel).run_id
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"cannot load model {model_uri}: {first_line(exc)}") from None
    if not run_id:
        raise RegistryError(f"{model_uri} was not logged by a training run: its preprocessing "
                            "(the dataset manifest) is unknown")
    return run_id


def training_data(tracker: Tracker, model_uri: str) -> tuple[str, dict[str, int] | None]:
    """(the dataset version a model was trained on, the labels it predicted on that version's
    validation split, or None when its run predates that record)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    run_id = model_run(tracker, model_uri)
    dataset_url = tracker.client.get_run(run_id).data.tags.get(keys.DATASET_URL)
    if not dataset_url:
        raise RegistryError(f"{model_uri}'s training run {run_id} records no dataset.url")
    folder, _ = keys.VAL_PREDICTED_LABELS_ARTIFACT.rsplit("/", 1)
    listed = {a.path for a in tracker.client.list_artifacts(run_id, folder)}
    if keys.VAL_PREDICTED_LABELS_ARTIFACT not in listed:  # a run of an earlier release
        return dataset_url, None
    try:
        with tracker.active():
            predicted = mlflow.artifacts.load_dict(
                f"runs:/{run_id}/{keys.VAL_PREDICTED_LABELS_ARTIFACT}")
    except (MlflowException, OSError, ValueError) as exc:
        raise RegistryError(f"cannot read {keys.VAL_PREDICTED_LABELS_ARTIFACT} of run "
                            f"{run_id}: {first_line(exc)}") from None
    return dataset_url, predicted


def fetch_model(tracker: Tracker, model_uri: str, dest: str) -> tuple[str, str]:
    """Download the model to ``dest``; returns (local model folder, the run that trained it)."""
    run_id = model_run(tracker, model_uri)  # first: a model no training made is refused early
    return _download(tracker, model_uri, dest), run_id


def training_inputs(tracker: Tracker, run_id: str) -> tuple[Manifest, str | None]:
    """(the dataset manifest a training run logged, its vocabulary text or None)."""
    from mlflow.exceptions import MlflowException

    try:
        folder = Path(tracker.client.download_artifacts(
            run_id, keys.DATASET_ARTIFACTS, storage.scratch_dir("pipeline-inputs-")))
        manifest = Manifest.from_json((folder / "manifest.json").read_text(encoding="utf-8"))
    except (MlflowException, OSError):
        raise TrainingInputsError(f"run {run_id} has no {keys.MANIFEST_ARTIFACT}: it was not "
                                  "made by pipeline train, so its preprocessing is unknown"
                                  ) from None
    vocab = folder / VOCAB_NAME
    return manifest, vocab.read_text(encoding="utf-8") if vocab.exists() else None


def check_fits(tracker: Tracker, model_uri: str, manifest: Manifest, dataset_url: str) -> None:
    """The model was trained on data with the same labels (and vocabulary) as ``manifest``:
    otherwise its scores would be silently wrong, not low."""
    trained_on, vocab = training_inputs(tracker, model_run(tracker, model_uri))
    if trained_on.kind != manifest.kind or trained_on.labels != manifest.labels:
        raise ModelMismatchError(
            f"{model_uri} was trained on {trained_on.kind} labelled {trained_on.labels}; "
            f"{dataset_url} holds {manifest.kind} labelled {manifest.labels}")
    if vocab is not None and vocab != storage.read_text(storage.join(dataset_url, VOCAB_NAME)):
        raise ModelMismatchError(f"{model_uri} was trained with another vocabulary than "
                                 f"{dataset_url}'s {VOCAB_NAME}: its token ids would mean other "
                                 "words")


def checked_predict(predict: Predict, inputs: np.ndarray, classes: int, what: str) -> np.ndarray:
    """``predict(inputs)`` as float64 probabilities of ``classes`` columns, or a clear error."""
    try:
        probs = np.asarray(predict(inputs), dtype=np.float64)
    except Exception as exc:  # the model's own error says what it expected
        raise ModelMismatchError(f"the model cannot score {what} (inputs "
                                 f"{inputs.shape[1:]}): {first_line(exc)}") from None
    if probs.shape != (len(inputs), classes):
        raise ModelMismatchError(f"the model predicts {probs.shape[1:]} values per row; "
                                 f"{what} has {classes} classes")
    return probs
