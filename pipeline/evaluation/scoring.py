"""Scoring a model on every row of a dataset split exactly once: plain numpy on its outputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.datasets.manifest import Manifest
from pipeline.datasets.reader import model_batches
from pipeline.errors import InputError
from pipeline.tracking.models import checked_predict


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
    classes = manifest.num_classes
    confusion = np.zeros((classes, classes), np.int64)
    loss_sum = 0.0
    for inputs, labels in model_batches(dataset_url, manifest, split, batch_size):
        probs = checked_predict(predict, inputs, classes, dataset_url)
        loss_sum += float(-np.log(probs[np.arange(len(labels)), labels].clip(1e-7, 1)).sum())
        np.add.at(confusion, (labels, probs.argmax(axis=1)), 1)
    rows, expected = int(confusion.sum()), manifest.splits[split].rows
    if rows != expected:
        raise InputError(f"read {rows} rows of {dataset_url}/{split}, its manifest says "
                         f"{expected}")
    return Scores(rows=rows, loss=loss_sum / rows, accuracy=float(np.trace(confusion)) / rows,
                  confusion=confusion)
