"""Scoring a model on every row of a dataset split exactly once: plain numpy on its outputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.datasets.features import feature_of
from pipeline.datasets.manifest import Manifest
from pipeline.datasets.reader import read_batches
from pipeline.errors import InputError
from pipeline.evaluation import metrics
from pipeline.tracking.models import checked_predict


@dataclass(frozen=True)
class Review:
    """Beyond accuracy: what a reviewer of a model version reads."""

    macro_f1: float
    roc_auc: float  # macro one-vs-rest
    ece: float  # expected calibration error
    calibration: list[dict]  # per confidence bin: rows, confidence, accuracy
    slices: dict[str, dict[str, dict]]  # kind -> value -> rows, accuracy
    worst_slice: list | None  # [kind, value, its row] among slices of enough rows


@dataclass(frozen=True)
class Scores:
    rows: int
    loss: float  # categorical cross-entropy of the predicted probabilities
    accuracy: float
    confusion: np.ndarray  # rows: true label, columns: predicted
    review: Review | None = None

    def metric(self, name: str) -> float:
        return {"accuracy": self.accuracy, "loss": self.loss}[name]


# read besides the feature, when the version has them (older versions may not)
SLICE_FIELDS = ("source", "length", "line", "original_width", "original_height")


def _slices(batch: dict[str, np.ndarray], manifest: Manifest) -> dict[str, list[str]]:
    """Each row's slice values: label, source folder, and the size bucket (text: tokens;
    images: the original file's longer side)."""
    slices = {"label": [manifest.labels[i] for i in batch["label"]]}
    if "source" in batch:
        lines = batch.get("line", [None] * len(batch["source"]))
        slices["source"] = [metrics.source_folder(s, line)
                            for s, line in zip(batch["source"], lines, strict=True)]
    if "length" in batch:
        slices["length"] = [metrics.length_bucket(int(n)) for n in batch["length"]]
    if "original_width" in batch:
        slices["size"] = [metrics.size_bucket(int(w), int(h)) for w, h in
                          zip(batch["original_width"], batch["original_height"], strict=True)]
    return slices


def score_split(predict: Callable[[np.ndarray], np.ndarray], dataset_url: str,
                manifest: Manifest, split: str, slice_min_rows: int = 30,
                batch_size: int = 256) -> Scores:
    """``predict`` (inputs -> class probabilities) on every row of ``split``, count checked."""
    if split not in manifest.splits or manifest.splits[split].rows == 0:
        raise InputError(f"{dataset_url} has no rows in a '{split}' split "
                         f"(splits: {', '.join(sorted(manifest.splits))})")
    feature, tally, loss_sum = feature_of(manifest), metrics.Tally(manifest.num_classes), 0.0
    stored = {f["name"] for f in manifest.schema}
    fields = (feature.field, "label", *(f for f in SLICE_FIELDS if f in stored))
    for batch in read_batches(dataset_url, split, fields, batch_size):
        labels = batch["label"].astype(np.int64)
        probs = checked_predict(predict, feature.model_input(batch[feature.field]),
                                manifest.num_classes, dataset_url)
        loss_sum += float(-np.log(probs[np.arange(len(labels)), labels].clip(1e-7, 1)).sum())
        tally.add(probs, labels, _slices(batch, manifest))
    rows, expected = int(tally.confusion.sum()), manifest.splits[split].rows
    if rows != expected:
        raise InputError(f"read {rows} rows of {dataset_url}/{split}, its manifest says "
                         f"{expected}")
    return Scores(rows=rows, loss=loss_sum / rows,
                  accuracy=float(np.trace(tally.confusion)) / rows, confusion=tally.confusion,
                  review=_review(tally, slice_min_rows))


def _review(tally: metrics.Tally, slice_min_rows: int) -> Review:
    slices = metrics.slice_table(tally.slices)
    worst = metrics.worst_slice(slices, slice_min_rows)
    return Review(macro_f1=metrics.macro_f1(tally.confusion),
                  roc_auc=metrics.roc_auc(tally.scores_of_class, tally.scores_of_all),
                  ece=metrics.expected_calibration_error(tally.calibration),
                  calibration=metrics.calibration_table(tally.calibration), slices=slices,
                  worst_slice=list(worst) if worst else None)


def first_rows(dataset_url: str, manifest: Manifest, split: str, rows: int
               ) -> dict[str, np.ndarray]:
    """The first ``rows`` rows of the split in read order (deterministic for a version): model
    inputs, labels and, for text, the cleaned text. Robustness and explanations work on them."""
    feature = feature_of(manifest)
    fields = (feature.field, "label", *(("text",) if manifest.kind == "text" else ()))
    taken: dict[str, list] = {name: [] for name in fields}
    for batch in read_batches(dataset_url, split, fields, min(rows, 256)):
        for name in fields:
            taken[name].extend(batch[name])
        if len(taken["label"]) >= rows:
            break
    sample = {name: np.stack(values[:rows]) for name, values in taken.items()}
    sample[feature.field] = feature.model_input(sample[feature.field])
    return sample
