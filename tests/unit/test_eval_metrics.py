"""Evaluation's review metrics, counted batch by batch, against their definitions computed the
slow way on the whole split."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluation import metrics


def _probs(rng, labels: np.ndarray, classes: int, signal: float) -> np.ndarray:
    logits = rng.normal(size=(len(labels), classes))
    logits[np.arange(len(labels)), labels] += signal
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def _tally(probs, labels, slices=None, batch=37) -> metrics.Tally:
    tally = metrics.Tally(probs.shape[1])
    for start in range(0, len(labels), batch):
        part = slice(start, start + batch)
        tally.add(probs[part], labels[part],
                  {k: v[part] for k, v in (slices or {}).items()})
    return tally


def _pairwise_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    pos, neg = scores[positive], scores[~positive]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (len(pos) * len(neg))


def test_binned_roc_auc_matches_the_pairwise_definition():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 4, 600)
    probs = _probs(rng, labels, 4, signal=1.2)
    tally = _tally(probs, labels)
    expected = np.mean([_pairwise_auc(probs[:, c], labels == c) for c in range(4)])
    assert metrics.roc_auc(tally.scores_of_class, tally.scores_of_all) == pytest.approx(
        expected, abs=2e-3)
    assert 0.7 < expected < 0.99  # the data has signal, not a trivial 0.5 or 1.0


def test_macro_f1_averages_the_classes_that_occur():
    confusion = np.array([[8, 2, 0], [1, 4, 0], [0, 0, 0]])  # class 2 never occurs
    f1_a, f1_b = 2 * 8 / (10 + 9), 2 * 4 / (5 + 6)
    assert metrics.macro_f1(confusion) == pytest.approx((f1_a + f1_b) / 2)


def test_calibration_error_is_the_gap_between_confidence_and_accuracy():
    labels = np.zeros(10, np.int64)
    confident = np.tile([0.9, 0.1], (10, 1))
    right = _tally(confident, labels)
    assert metrics.expected_calibration_error(right.calibration) == pytest.approx(0.1)
    half = _tally(confident, np.array([0, 1] * 5))
    assert metrics.expected_calibration_error(half.calibration) == pytest.approx(0.4)
    table = metrics.calibration_table(half.calibration)
    assert [b["rows"] for b in table if b["rows"]] == [10]
    assert table[9]["accuracy"] == pytest.approx(0.5)


def test_the_worst_slice_is_named_among_slices_with_enough_rows():
    labels = np.array([0] * 40 + [1] * 40)
    probs = np.tile([0.8, 0.2], (80, 1))  # always predicts class 0
    source = np.array(["s3://b/raw/cam1/x"] * 40 + ["s3://b/raw/cam2/x"] * 35
                      + ["s3://b/raw/odd/x"] * 5)
    slices = {"label": np.where(labels == 0, "cat", "dog"),
              "source": [metrics.source_folder(s) for s in source]}
    table = metrics.slice_table(_tally(probs, labels, slices).slices)
    assert table["source"]["cam1"] == {"rows": 40, "accuracy": 1.0}
    assert table["source"]["odd"] == {"rows": 5, "accuracy": 0.0}
    kind, value, row = metrics.worst_slice(table, min_rows=30)
    assert (kind, value, row["rows"]) == ("label", "dog", 40)  # odd/ has too few rows
    assert metrics.worst_slice(table, min_rows=100) is None


def test_text_lengths_fall_in_fixed_buckets():
    assert [metrics.length_bucket(n) for n in (1, 7, 8, 31, 255, 256, 5000)] == [
        "1-7", "1-7", "8-15", "16-31", "128-255", "256+", "256+"]


def test_image_sizes_fall_in_buckets_by_their_longer_side():
    assert [metrics.size_bucket(w, h) for w, h in ((28, 28), (31, 40), (64, 20), (640, 480),
                                                   (4000, 3000))] == [
        "<32", "32-63", "64-127", "512-1023", "2048+"]


def test_a_diverged_model_is_counted_not_crashed():
    probs = np.array([[np.nan, np.nan], [0.2, 0.8], [np.inf, 0.0]])
    tally = _tally(probs, np.array([0, 1, 0]))
    assert tally.confusion.sum() == 3 and tally.calibration[:, 0].sum() == 3


def test_a_table_row_is_sliced_by_its_file_a_file_by_its_folder():
    assert metrics.source_folder("s3://b/raw/cam1/x.png") == "s3://b/raw/cam1"
    assert metrics.source_folder("s3://b/raw/reviews.csv", line=7) == "s3://b/raw/reviews.csv"
