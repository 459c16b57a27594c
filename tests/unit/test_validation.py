"""Data validation on real data in plain Python: the project's digits and reviews, profiled by
ingest's own per-record functions, with real shifts made from them (docs/VALIDATION.md)."""

from __future__ import annotations

import random

import cv2
import numpy as np
import pytest

from pipeline.config import ConfigError, load_config
from pipeline.datasets import statistics
from pipeline.datasets.profiles import image_profile, oov_share, text_profile
from pipeline.ingest.image_records import clean_image_file
from pipeline.ingest.text_records import clean_text_document
from pipeline.samples.digits import load_digits
from pipeline.samples.reviews import load_reviews
from pipeline.validation import expectations
from pipeline.validation.drift import homogeneity_pvalue, js_distance
from pipeline.validation.validate import validate

CFG = load_config(None, [])
RATIOS = CFG.split.model_dump()


def _image_rows(images: np.ndarray, labels: np.ndarray) -> list[tuple[str, str, str, str]]:
    rows = []
    for index, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        png = cv2.imencode(".png", pixels)[1].tobytes()
        record = clean_image_file(f"/raw/{label}/{index}.png", png, str(label), CFG.images,
                                  RATIOS)
        rows.append((record.split, record.label_name, record.path, record.profile))
    return rows


def _image_stats(images: np.ndarray, labels: np.ndarray) -> statistics.Statistics:
    rows = _image_rows(images, labels)
    return statistics.build(statistics.accumulate(rows, "images"), "images", {})


def _text_stats(pairs: list[tuple[str, str]]) -> statistics.Statistics:
    rows = []
    for index, (text, label) in enumerate(pairs):
        record = clean_text_document(f"/raw/{label}/{index}.txt", None, text.encode(), label,
                                     CFG.text, RATIOS)
        if record.reason is None:
            rows.append((record.split, record.label_name, record.source, record.profile))
    return statistics.build(statistics.accumulate(rows, "text"), "text", {})


@pytest.fixture(scope="module")
def digits():
    images, labels = load_digits()
    order = np.random.default_rng(1).permutation(len(labels))[:2400]
    half_a, half_b = order[:1200], order[1200:]
    return _image_stats(images[half_a], labels[half_a]), images[half_b], labels[half_b]


@pytest.fixture(scope="module")
def reviews():
    frame = load_reviews().dropna()
    pairs = list(zip(frame["text"], frame["category"], strict=True))
    random.Random(1).shuffle(pairs)
    return _text_stats(pairs[:3000]), pairs[3000:6000]


def _errors(new, reference) -> list[str]:
    found = validate(new, reference, None, CFG.validation, ("new", "reference"))
    return found.named("error")


def test_two_random_halves_of_the_digits_pass(digits):
    reference, images, labels = digits
    assert _errors(_image_stats(images, labels), reference) == []


@pytest.mark.parametrize(("shift", "named"), [
    (lambda x: 255 - x, "brightness"),  # inverted
    (lambda x: (x * 0.5 + x.mean(axis=(1, 2), keepdims=True) * 0.5).astype(np.uint8),
     "contrast"),  # contrast halved
])
def test_a_brightness_or_contrast_shift_of_the_digits_fails_naming_it(digits, shift, named):
    reference, images, labels = digits
    assert named in _errors(_image_stats(shift(images), labels), reference)


def test_a_missing_class_fails_naming_the_label(digits):
    reference, images, labels = digits
    keep = labels != 7
    assert "label" in _errors(_image_stats(images[keep], labels[keep]), reference)


def test_reviews_halves_pass_and_texts_cut_to_three_words_fail(reviews):
    reference, others = reviews
    assert _errors(_text_stats(others), reference) == []
    cut = [(" ".join(text.split()[:3]), label) for text, label in others]
    assert {"chars", "tokens"} <= set(_errors(_text_stats(cut), reference))


def test_a_small_batch_is_judged_by_its_noise_not_its_ragged_histogram(digits):
    reference, images, labels = digits
    assert _errors(_image_stats(images[:60], labels[:60]), reference) == []


def test_accumulators_merge_in_any_grouping_to_the_same_statistics(digits):
    _, images, labels = digits
    rows = _image_rows(images[:90], labels[:90])
    whole = statistics.build(statistics.accumulate(rows, "images"), "images", {})
    parts = [statistics.accumulate(rows[i:i + 25], "images") for i in range(0, 90, 25)]
    merged = statistics.empty()
    for part in reversed(parts):
        merged = statistics.merge(part, merged)
    built = statistics.build(merged, "images", {})
    a, b, c = parts[:3]  # associative, with empty() as identity: any partitioning adds up
    assert statistics.merge(a, statistics.merge(b, c))["hist"] == statistics.merge(
        statistics.merge(a, b), c)["hist"]
    assert statistics.merge(statistics.empty(), a) == a
    assert built.feature("brightness")["counts"] == whole.feature("brightness")["counts"]
    assert built.feature("contrast")["mean"] == pytest.approx(whole.feature("contrast")["mean"])
    assert built.labels() == whole.labels() and built.rows == 90
    assert built.document["channels"]["all"]["r"]["mean"] == pytest.approx(
        whole.document["channels"]["all"]["r"]["mean"])


def test_bins_are_fixed_and_open_at_the_top():
    brightness = statistics.features("images")["brightness"]
    assert [brightness.bin(v) for v in (0, 15.9, 16, 255, 256, 1e9, -3)] == [
        "0", "0", "1", "15", "15", "15", "0"]
    assert statistics.features("images")["format"].bin("PNG") == "PNG"


def test_image_profile_measures_the_stored_pixels():
    flat = np.full((8, 8, 3), 200, np.uint8)
    profile = image_profile(flat, 640, 480, "JPEG", "RGB")
    assert profile["brightness"] == pytest.approx(200) and profile["contrast"] == 0
    assert profile["sharpness"] == 0 and profile["near_constant"] == "yes"
    assert (profile["width"], profile["height"], profile["format"]) == (640, 480, "JPEG")
    checker = np.indices((8, 8)).sum(axis=0) % 2 * 255
    assert image_profile(checker.astype(np.uint8), 8, 8, "PNG", "L")["near_constant"] == "no"


def test_text_profile_and_oov_share():
    profile = text_profile("café au lait", 3, "utf-8")
    assert profile["non_ascii"] == pytest.approx(1 / 12) and profile["chars"] == 12
    assert oov_share(np.array([5, 1, 1, 7, 0, 0]), 4, oov_id=1) == 0.5
    assert oov_share(np.array([0, 0]), 0, oov_id=1) == 0.0


def test_distances_and_the_noise_test():
    assert js_distance({"a": 5, "b": 5}, {"a": 50, "b": 50}) == 0
    assert js_distance({"a": 5}, {"b": 5}) == pytest.approx(1)
    assert homogeneity_pvalue({"a": 5000, "b": 5000}, {"a": 9000, "b": 1000}) < 1e-6
    assert homogeneity_pvalue({"a": 3}, {"a": 9}) == 1.0  # one bin: nothing to test


def test_inferred_expectations_pass_their_own_data_and_catch_a_shift(digits, tmp_path):
    reference, images, labels = digits
    path = tmp_path / "expectations.yaml"
    expectations.write(expectations.infer(reference), str(path), "the reference")
    assert "edit the bounds" in path.read_text()
    expected = expectations.read(str(path))
    assert expectations.check(reference, expected) == []
    keep = labels != 3
    findings = expectations.check(_image_stats(255 - images[keep], labels[keep]), expected)
    assert {(f.feature, f.check) for f in findings} >= {("label", "missing_label"),
                                                        ("brightness", "range")}


def test_an_expectations_file_with_an_unknown_key_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("kind: images\nlabels: [a]\nmin_rows_per_label: 1\nclass_share: {}\n"
                    "ranges: {}\ncategories: {}\nmin_row: 3\n")
    with pytest.raises(ConfigError, match="min_row"):
        expectations.read(str(path))
    with pytest.raises(ConfigError, match="does not exist"):
        expectations.read(str(tmp_path / "none.yaml"))


def test_thresholds_are_checked_at_the_edge():
    with pytest.raises(ConfigError, match="drift_warning"):
        load_config(None, ["validation.drift_warning=0.5", "validation.drift_error=0.2"])


def _cumulative(old_rows, new_rows) -> statistics.Statistics:
    """A retrain's version: the old inputs and new files, the new ones also counted apart."""
    return statistics.build(statistics.accumulate(old_rows + new_rows, "images"), "images", {},
                            increment=statistics.accumulate(new_rows, "images"))


def test_new_files_of_one_class_are_judged_at_their_class_mix(digits):
    reference, images, labels = digits
    ones = labels == 1
    old_rows = _image_rows(images[~ones][:400], labels[~ones][:400])
    fine = _cumulative(old_rows, _image_rows(images[ones][:80], labels[ones][:80]))
    assert _errors(fine, reference) == []
    # the same files inverted: diluted in the whole version, plain in the new files alone
    bad = _cumulative(old_rows, _image_rows(255 - images[ones][:80], labels[ones][:80]))
    assert "brightness (new files)" in _errors(bad, reference)


def test_in_increment_matches_sparks_uris_to_the_snapshots_relative_paths():
    increment = frozenset({"cats/a.png", "b.csv", "new reviews.parquet"})
    assert statistics.in_increment("file:/data/raw/cats/a.png", "file:///data/raw", increment)
    assert statistics.in_increment("s3a://bucket/raw/b.csv", "s3://bucket/raw/", increment)
    assert statistics.in_increment("file:/data/raw/new%20reviews.parquet", "file:///data/raw",
                                   increment)  # Spark quotes Parquet paths
    assert not statistics.in_increment("file:/data/raw/dogs/a.png", "file:///data/raw",
                                       increment)
    assert not statistics.in_increment("file:/data/raw/old/b.csv", "file:///data/raw",
                                       increment)  # the same name elsewhere
    assert not statistics.in_increment("s3a://other/raw/b.csv", "s3://bucket/raw", increment)


def test_predicted_counts_are_the_confusion_matrixs_columns():
    from pipeline.tracking.reports import predicted_counts

    confusion = np.array([[5, 1, 0], [0, 0, 3], [0, 0, 2]])  # rows: true a, b, c
    assert predicted_counts(confusion, ["a", "b", "c"]) == {"a": 5, "b": 1, "c": 5}


def test_a_version_is_not_compared_with_data_of_another_kind(digits, reviews):
    from pipeline.errors import UsageError

    with pytest.raises(UsageError, match="cannot compare"):
        validate(digits[0], reviews[0], None, CFG.validation, ("images", "text"))


def test_inferred_ranges_leave_room_for_a_statistic_that_never_varied(digits):
    reference, _, _ = digits
    inferred = expectations.infer(reference)
    low, high = inferred.ranges["width"]  # every digit is 28 wide: half a bin (16) each side
    assert (low, high) == (20.0, 36.0)
    assert "oov" not in inferred.ranges  # not judged, so not expected either
