"""What a run shows besides numbers: training curves, the confusion matrix and per-class metrics.

Pure functions of the history and the confusion counts (rows: true label, columns: predicted),
drawn with matplotlib's non-interactive backend.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from pipeline import storage
from pipeline.datasets.statistics import (
    VALIDATION_NAME,
    VALIDATION_REPORT,
    Statistics,
    StatisticsError,
    read_statistics,
)
from pipeline.tracking import keys

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def class_scores(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, F1) per class; 0 where a class is never predicted or never true."""
    confusion = np.asarray(confusion, dtype=np.float64)
    hits = np.diag(confusion)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros_like(hits), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
    return precision, recall, f1


def per_class_metrics(confusion: np.ndarray, labels: Sequence[str]) -> dict[str, list]:
    """Precision, recall, F1 and support per class, as table columns."""
    precision, recall, f1 = class_scores(confusion)
    actual = np.asarray(confusion).sum(axis=1)
    return {"label": list(labels), "support": [int(n) for n in actual],
            "precision": [round(float(v), 4) for v in precision],
            "recall": [round(float(v), 4) for v in recall],
            "f1": [round(float(v), 4) for v in f1]}


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG file bytes; the figure is closed."""
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png")
    finally:
        pyplot().close(figure)
    return buffer.getvalue()


def log_figures(client, run_id: str, figures: Mapping[str, Figure]) -> None:
    """Each figure as a PNG artifact at its path in the run; all closed, whatever fails."""
    try:
        for name, figure in figures.items():
            client.log_figure(run_id, figure, name)
    finally:
        for figure in figures.values():
            pyplot().close(figure)


def curves_figure(history: Mapping[str, Sequence[float]]) -> Figure:
    """Loss and accuracy per epoch, training beside validation."""
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key, style in ((metric, "-o"), (f"val_{metric}", "--s")):
            if key in history:
                values = list(history[key])
                axis.plot(range(1, len(values) + 1), values, style, label=key)
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    return figure


GRID_MAX = 30  # classes: past this a grid of counts is unreadable (and huge to draw)
TOP_CONFUSIONS = 25  # what is drawn instead: the largest true -> predicted mistakes


def confusion_figure(confusion: np.ndarray, labels: Sequence[str], title: str) -> Figure:
    """Counts with the row-normalised share as colour, so small classes stay readable; past
    ``GRID_MAX`` classes, the largest confusions instead (a bounded figure for 1,000 classes;
    every class's numbers stay in ``per_class.json``)."""
    confusion = np.asarray(confusion)
    if len(labels) > GRID_MAX:
        return _top_confusions_figure(confusion, labels, title)
    plt = pyplot()
    shares = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.5 * len(labels) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for row in range(len(labels)):
        for col in range(len(labels)):
            axis.text(col, row, str(int(confusion[row, col])), ha="center", va="center",
                      color="white" if shares[row, col] > 0.5 else "black", fontsize=8)
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    figure.tight_layout()
    return figure


def top_confusions(confusion: np.ndarray, labels: Sequence[str], top: int
                   ) -> list[tuple[str, str, int]]:
    """The ``top`` largest off-diagonal counts as (true, predicted, count), largest first."""
    mistakes = np.array(confusion, dtype=np.int64)
    np.fill_diagonal(mistakes, 0)
    order = np.argsort(-mistakes, axis=None, kind="stable")[:top]  # ties: row, then column
    cells = zip(*np.unravel_index(order, mistakes.shape), strict=True)
    return [(labels[row], labels[col], int(mistakes[row, col])) for row, col in cells
            if mistakes[row, col] > 0]


def _top_confusions_figure(confusion: np.ndarray, labels: Sequence[str], title: str
                           ) -> Figure:
    plt = pyplot()
    found = top_confusions(confusion, labels, TOP_CONFUSIONS)
    figure, axis = plt.subplots(figsize=(8, 1.5 + 0.3 * max(len(found), 1)))
    axis.barh(range(len(found)), [count for *_, count in found], color="tab:blue")
    axis.set_yticks(range(len(found)), [f"{true} -> {predicted}" for true, predicted, _ in found],
                    fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel("rows (true -> predicted)")
    axis.set_title(f"{title}: the {len(found)} largest confusions of {len(labels)} classes")
    figure.tight_layout()
    return figure


def log_report(client, run_id: str, confusion: np.ndarray, labels: Sequence[str], split: str,
               history: Mapping[str, Sequence[float]] | None = None) -> None:
    """Figures and the per-class table into the run, under ``<split>/`` (curves at the top)."""
    figures = {f"{split}/confusion_matrix.png": confusion_figure(
        confusion, labels, f"{split}: {int(np.asarray(confusion).sum())} rows")}
    if history:
        figures["training_curves.png"] = curves_figure(history)
    log_figures(client, run_id, figures)
    client.log_table(run_id, per_class_metrics(confusion, labels), f"{split}/per_class.json")
    client.log_dict(run_id, predicted_counts(confusion, labels),
                    f"{split}/{keys.PREDICTED_LABELS}")


def predicted_counts(confusion: np.ndarray, labels: Sequence[str]) -> dict[str, int]:
    """Rows per predicted label: the confusion matrix's column sums (rows: the true label)."""
    predicted = np.asarray(confusion).sum(axis=0)
    return {label: int(n) for label, n in zip(labels, predicted, strict=True)}


def reliability_figure(calibration: Sequence[Mapping], title: str) -> Figure:
    """Accuracy against confidence per bin, beside the diagonal of perfect calibration."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(5, 5))
    filled = [b for b in calibration if b["rows"]]
    axis.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    axis.bar([(b["low"] + b["high"]) / 2 for b in filled], [b["accuracy"] for b in filled],
             width=[b["high"] - b["low"] for b in filled], alpha=0.6, edgecolor="black",
             label="accuracy")
    axis.plot([b["confidence"] for b in filled], [b["accuracy"] for b in filled], "o-",
              label="at mean confidence")
    axis.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (predicted class)",
             ylabel="accuracy", title=title)
    axis.legend(loc="upper left")
    figure.tight_layout()
    return figure


def log_review(client, run_id: str, review, split: str) -> None:
    """An evaluation's review under ``<split>/``: reliability diagram, calibration bins and
    accuracy per slice (``pipeline.evaluation.scoring.Review``)."""
    log_figures(client, run_id, {f"{split}/reliability.png": reliability_figure(
        review.calibration, f"{split}: ECE {review.ece:.4f}")})
    client.log_dict(run_id, review.calibration, f"{split}/calibration.json")
    client.log_dict(run_id, {"worst": review.worst_slice, "slices": review.slices},
                    f"{split}/slices.json")


def statistics_figure(stats: Statistics) -> Figure:
    """One bar chart per numeric or categorical statistic of a version (every split
    together): what the data the run learned from looks like."""
    plt = pyplot()
    names = list(stats.document["features"])
    columns = 3
    rows = -(-len(names) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.6 * rows), squeeze=False)
    for axis, name in zip(axes.flat, names, strict=False):
        counts = stats.feature(name)["counts"]
        keys_ = sorted(counts, key=lambda k: (len(k), k))
        edges = stats.definition(name)["edges"]
        ticks = [f"{edges[int(k)]:g}" if edges else k for k in keys_]
        axis.bar(range(len(keys_)), [counts[k] for k in keys_], color="#1f6fd1")
        axis.set_xticks(range(len(keys_)), ticks, rotation=45, fontsize=7)
        axis.set_title(name, fontsize=9)
    for axis in list(axes.flat)[len(names):]:
        axis.set_visible(False)
    figure.suptitle(f"{stats.rows} rows", fontsize=10)
    figure.tight_layout()
    return figure


def log_statistics(client, run_id: str, dataset_url: str) -> None:
    """The version's statistics (JSON and a PNG) and, when a retrain validated it, the
    validation's outcome and report, under ``dataset/``."""
    try:
        stats = read_statistics(dataset_url)
    except StatisticsError:  # a version of an older release: nothing to show
        return
    client.log_text(run_id, stats.to_json(), keys.STATISTICS_ARTIFACT)
    log_figures(client, run_id, {keys.STATISTICS_FIGURE: statistics_figure(stats)})
    for name in (VALIDATION_NAME, VALIDATION_REPORT):
        try:
            text = storage.read_text(storage.join(dataset_url, name))
        except FileNotFoundError:
            continue
        client.log_text(run_id, text, f"{keys.DATASET_ARTIFACTS}/{name}")


def robustness_figure(curves: Mapping[str, Sequence[float]], clean: float) -> Figure:
    """Accuracy against severity (0: clean), one line per corruption."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, accuracies in curves.items():
        axis.plot(range(len(accuracies) + 1), [clean, *accuracies], "-o", label=name)
    axis.set_xticks(range(4), ["clean", "1", "2", "3"])
    axis.set_xlabel("severity")
    axis.set_ylabel("accuracy")
    axis.set_ylim(0, 1)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower left")
    figure.tight_layout()
    return figure


def log_robustness(client, run_id: str, curves: Mapping[str, Sequence[float]],
                   clean: float) -> None:
    """The accuracy-by-severity figure into the run, under ``robustness/``."""
    log_figures(client, run_id, {keys.ROBUSTNESS_FIGURE: robustness_figure(curves, clean)})

