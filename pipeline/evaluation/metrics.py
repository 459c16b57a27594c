"""What a reviewer needs beyond accuracy, accumulated batch by batch in fixed memory (a split of
any size): macro-F1, one-vs-rest ROC-AUC, calibration, and accuracy per slice. Plain numpy.

Our own code rather than ``mlflow.models.evaluate``: that evaluator wants the whole split as one
DataFrame in memory and scikit-learn's metrics on it; here each batch is counted and dropped.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.tracking.reports import class_scores

CALIBRATION_BINS = 10  # equal-width bins of the predicted class's probability
AUC_BINS = 1000  # a class's scores are counted in these bins; scores in one bin tie (half)
LENGTH_EDGES = (1, 8, 16, 32, 64, 128, 256)  # token-count buckets of the text length slice
SIZE_EDGES = (32, 64, 128, 256, 512, 1024, 2048)  # longer-side pixels: the image size slice


@dataclass
class Tally:
    """Running counts of one split's predictions."""

    classes: int
    confusion: np.ndarray = field(init=False)  # rows: true label, columns: predicted
    calibration: np.ndarray = field(init=False)  # per bin: rows, confidence sum, correct
    scores_of_class: np.ndarray = field(init=False)  # [class, bin]: rows of that class
    scores_of_all: np.ndarray = field(init=False)  # [class, bin]: all rows
    slices: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # [rows, correct]

    def __post_init__(self) -> None:
        self.confusion = np.zeros((self.classes, self.classes), np.int64)
        self.calibration = np.zeros((CALIBRATION_BINS, 3), np.float64)
        self.scores_of_class = np.zeros((self.classes, AUC_BINS), np.int64)
        self.scores_of_all = np.zeros((self.classes, AUC_BINS), np.int64)

    def add(self, probs: np.ndarray, labels: np.ndarray,
            slices: Mapping[str, Sequence[str]]) -> None:
        """One batch: probabilities (rows x classes), true labels, each row's slice values. A
        diverged model's NaN or infinite outputs count as 0 (its loss says the rest)."""
        probs = np.nan_to_num(probs, nan=0.0, posinf=1.0, neginf=0.0).clip(0, 1)
        predicted = probs.argmax(axis=1)
        correct = predicted == labels
        np.add.at(self.confusion, (labels, predicted), 1)
        confidence = probs.max(axis=1)
        bins = np.minimum((confidence * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
        np.add.at(self.calibration, bins, np.stack([np.ones_like(confidence), confidence,
                                                    correct], axis=1))
        score_bins = np.minimum((probs * AUC_BINS).astype(int), AUC_BINS - 1)
        for c in range(self.classes):
            self.scores_of_all[c] += np.bincount(score_bins[:, c], minlength=AUC_BINS)
            self.scores_of_class[c] += np.bincount(score_bins[labels == c, c],
                                                   minlength=AUC_BINS)
        for kind, values in slices.items():
            counts = self.slices.setdefault(kind, {})
            for value, ok in zip(values, correct, strict=True):
                entry = counts.setdefault(str(value), [0, 0])
                entry[0] += 1
                entry[1] += int(ok)


def macro_f1(confusion: np.ndarray) -> float:
    """The mean F1 over classes that occur (true or predicted)."""
    _, _, f1 = class_scores(confusion)
    seen = (confusion.sum(axis=1) + confusion.sum(axis=0)) > 0
    return float(f1[seen].mean()) if seen.any() else float("nan")


def roc_auc(scores_of_class: np.ndarray, scores_of_all: np.ndarray) -> float:
    """Macro one-vs-rest ROC-AUC from binned scores: per class, the chance that a row of the
    class scores above a row of another (ties within a bin count half)."""
    aucs = []
    for positive, every in zip(scores_of_class, scores_of_all, strict=True):
        negative = every - positive
        n_pos, n_neg = positive.sum(), negative.sum()
        if n_pos and n_neg:
            below = np.concatenate([[0], np.cumsum(negative)[:-1]])
            aucs.append(float((positive * (below + 0.5 * negative)).sum() / (n_pos * n_neg)))
    return float(np.mean(aucs)) if aucs else float("nan")


def calibration_table(calibration: np.ndarray) -> list[dict[str, float]]:
    """Per confidence bin: its range, rows, mean confidence and accuracy (null when empty)."""
    table = []
    for b, (rows, confidence, correct) in enumerate(calibration):
        table.append({"low": b / CALIBRATION_BINS, "high": (b + 1) / CALIBRATION_BINS,
                      "rows": int(rows),
                      "confidence": confidence / rows if rows else None,
                      "accuracy": correct / rows if rows else None})
    return table


def expected_calibration_error(calibration: np.ndarray) -> float:
    """Rows-weighted mean gap between confidence and accuracy over the bins."""
    rows = calibration[:, 0]
    gaps = np.abs(calibration[:, 1] - calibration[:, 2])  # sums: gap x rows per bin
    return float(gaps.sum() / rows.sum()) if rows.sum() else float("nan")


def _bucket(value: int, edges: Sequence[int]) -> str:
    """``<first``, ``low-high`` between two edges (both included), or ``last+``."""
    if value < edges[0]:
        return f"<{edges[0]}"
    for low, high in itertools.pairwise(edges):
        if value < high:
            return f"{low}-{high - 1}"
    return f"{edges[-1]}+"


def length_bucket(tokens: int) -> str:
    """The text length slice of a row: ``8-15`` tokens, ..., ``256+``."""
    return _bucket(tokens, LENGTH_EDGES)


def size_bucket(width: int, height: int) -> str:
    """The image size slice of a row, by the original file's longer side: ``<32``, ``32-63``,
    ..., ``2048+`` pixels."""
    return _bucket(max(width, height), SIZE_EDGES)


def source_folder(source: str, line: int | None = None) -> str:
    """A row's source slice: a file's parent folder; a table row's (``line`` set) file."""
    if line is not None or "/" not in source:
        return source
    return source.rsplit("/", 1)[0]


def slice_table(slices: Mapping[str, Mapping[str, list[int]]]) -> dict[str, dict[str, dict]]:
    """kind -> value -> rows and accuracy; source folders shortened to what differs."""
    table = {}
    for kind, counts in slices.items():
        names = _short_names(list(counts)) if kind == "source" else {v: v for v in counts}
        table[kind] = {names[value]: {"rows": rows, "accuracy": correct / rows}
                       for value, (rows, correct) in sorted(counts.items())}
    return table


def _short_names(values: list[str]) -> dict[str, str]:
    """Each path without the leading folders all of them share (one path: its last part)."""
    parts = [v.split("/") for v in values]
    shared = 0
    while all(len(p) > shared + 1 and p[shared] == parts[0][shared] for p in parts):
        shared += 1
    return {v: "/".join(p[shared:]) for v, p in zip(values, parts, strict=True)}


def worst_slice(table: Mapping[str, Mapping[str, dict]], min_rows: int
                ) -> tuple[str, str, dict] | None:
    """(kind, value, its row) of the lowest accuracy among slices of at least ``min_rows``."""
    candidates = [(row["accuracy"], kind, value, row) for kind, values in table.items()
                  for value, row in values.items() if row["rows"] >= min_rows]
    if not candidates:
        return None
    _, kind, value, row = min(candidates, key=lambda c: (c[0], c[1], c[2]))
    return kind, value, row
