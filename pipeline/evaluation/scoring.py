"""Scoring a model on every row of a dataset split exactly once: plain numpy on its outputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.datasets.manifest import Manifest
from pipeline.datasets.reader import read_batches
from pipeline.errors import InputError, PipelineError, first_line
from pipeline.train.features import as_model_input, feature_field


class ModelMismatchError(PipelineError, ValueError):
    """The model does not take this dataset's inputs or does not predict its classes."""


def checked_predict(predict: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray,
                    classes: int, what: str) -> np.ndarray:
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


@dataclass(frozen=True)
class Scores:
    rows: int
    loss: float  # categorical cross-entropy of the predicted probabilities
    accuracy: float
    confusion: np.ndarray  # rows: true label, columns: predicted

    def metric(self, name: str) -> float:
        return {"accuracy": self.accuracy, "loss": self.loss}[name]


def score_split(predict: Callable[[np.ndarray], np.ndarray], dataset_url: str,
                manifest: Manifest, split: str, batch_size: int = 256) -> Scores:
    """``predict`` (inputs -> class probabilities) on every row of ``split``, count checked."""
    if split not in manifest.splits or manifest.splits[split].rows == 0:
        raise InputError(f"{dataset_url} has no rows in a '{split}' split "
                         f"(splits: {', '.join(sorted(manifest.splits))})")
    field, classes = feature_field(manifest), manifest.num_classes
    confusion = np.zeros((classes, classes), np.int64)
    loss_sum = 0.0
    for batch in read_batches(dataset_url, split, (field, "label"), batch_size):
        inputs = as_model_input(manifest, batch[field])
        probs = checked_predict(predict, inputs, classes, dataset_url)
        labels = batch["label"].astype(np.int64)
        loss_sum += float(-np.log(probs[np.arange(len(labels)), labels].clip(1e-7, 1)).sum())
        np.add.at(confusion, (labels, probs.argmax(axis=1)), 1)
    rows, expected = int(confusion.sum()), manifest.splits[split].rows
    if rows != expected:
        raise InputError(f"read {rows} rows of {dataset_url}/{split}, its manifest says "
                         f"{expected}")
    return Scores(rows=rows, loss=loss_sum / rows, accuracy=float(np.trace(confusion)) / rows,
                  confusion=confusion)
