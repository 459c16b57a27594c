"""Statistics computed by the ingest job, and ``pipeline validate`` on real versions with real
shifts: real Spark writes the versions, the command line judges them."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.datasets import statistics
from pipeline.datasets.features import decode_token_ids
from pipeline.datasets.profiles import image_profile, oov_share, text_profile
from pipeline.ingest.tokens import OOV, tokenize
from tests.procs import run_pipeline

pytestmark = pytest.mark.timeout(900)


def _copy_digits(digits_raw: Path, target: Path, keep, transform=None) -> Path:
    """The digits whose rank in their class folder ``keep`` accepts, copied (or rewritten by
    ``transform``)."""
    for folder in sorted(p for p in digits_raw.iterdir() if p.is_dir()):
        for rank, path in enumerate(sorted(folder.glob("*.png"))):
            if not keep(rank):
                continue
            out = target / folder.name / path.name
            out.parent.mkdir(parents=True, exist_ok=True)
            if transform is None:
                shutil.copy2(path, out)
            else:
                cv2.imwrite(str(out), transform(cv2.imread(str(path), cv2.IMREAD_UNCHANGED)))
    return target


@pytest.fixture(scope="module")
def versions(spark, config, digits_raw, tmp_path_factory) -> dict[str, Path]:
    """Digit versions ingested by the job: two halves of 600 (60 per class), and the second
    half with its brightness inverted."""
    from pipeline.ingest.image_job import ingest_images

    root = tmp_path_factory.mktemp("validation")
    raws = {
        "even": _copy_digits(digits_raw, root / "raw-even", lambda n: n < 120 and n % 2 == 0),
        "odd": _copy_digits(digits_raw, root / "raw-odd", lambda n: n < 120 and n % 2),
        "inverted": _copy_digits(digits_raw, root / "raw-inverted", lambda n: n < 120 and n % 2,
                                 lambda x: 255 - x),
    }
    for name, raw in raws.items():
        ingest_images(spark, config, str(raw), str(root / name))
    return {name: root / name for name in raws}


def _stored_image_rows(version: Path) -> list[tuple[str, str, str, dict]]:
    """(split, label, source, the profile measured again on the stored PNG) of every row."""
    rows = []
    for split in ("train", "val", "test"):
        table = pq.read_table(version / split, columns=["image", "label_name", "source"])
        for image, label, source in zip(*(table.column(c).to_pylist() for c in
                                          ("image", "label_name", "source")), strict=True):
            pixels = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_UNCHANGED)
            rgb = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB) if pixels.ndim == 3 else pixels
            rows.append((split, label, source, image_profile(rgb, 28, 28, "PNG", "L")))
    return rows


def test_the_jobs_image_statistics_equal_plain_python_on_the_stored_rows(versions):
    stored = statistics.read_statistics(str(versions["even"]))
    rows = _stored_image_rows(versions["even"])
    again = statistics.build(statistics.accumulate(
        [(s, lab, src, json.dumps(p)) for s, lab, src, p in rows], "images"), "images", {})
    for name in ("brightness", "contrast", "sharpness", "near_constant"):
        for split in ("train", "val", "test", "all"):
            assert stored.feature(name, split)["counts"] == again.feature(name, split)["counts"]
    assert stored.feature("brightness")["mean"] == pytest.approx(
        again.feature("brightness")["mean"])
    assert stored.document["channels"]["all"]["r"]["std"] == pytest.approx(
        again.document["channels"]["all"]["r"]["std"])
    assert stored.document["labels"] == again.document["labels"]
    # what only the raw files knew: every digit is a 28x28 grayscale PNG
    assert stored.feature("format")["counts"] == {"PNG": stored.rows}
    assert stored.feature("mode")["counts"] == {"L": stored.rows}
    manifest = json.loads((versions["even"] / "manifest.json").read_text())
    assert manifest["extra"]["statistics"]["means"]["brightness"] == pytest.approx(
        stored.feature("brightness")["mean"], abs=1e-5)


def test_the_jobs_text_statistics_equal_plain_python_on_the_stored_rows(spark, config,
                                                                       reviews_raw, tmp_path):
    from pipeline.ingest.text_job import ingest_text

    raw = tmp_path / "raw"
    for path in sorted(reviews_raw.rglob("*.txt"))[::12]:
        (raw / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, raw / path.parent.name / path.name)
    ingest_text(spark, config, str(raw), str(tmp_path / "reviews"))
    rows = []
    for split in ("train", "val", "test"):
        table = pq.read_table(tmp_path / "reviews" / split).to_pylist()
        for row in table:
            ids = decode_token_ids(row["token_ids"])
            profile = text_profile(row["text"], len(tokenize(row["text"],
                                                             config.text.token_pattern)),
                                   "utf-8") | {"oov": oov_share(ids, row["length"], OOV)}
            rows.append((split, row["label_name"], row["source"], json.dumps(profile)))
    again = statistics.build(statistics.accumulate(rows, "text"), "text", {})
    stored = statistics.read_statistics(str(tmp_path / "reviews"))
    for name in ("chars", "tokens", "non_ascii", "oov"):
        assert stored.feature(name)["counts"] == again.feature(name)["counts"], name
        assert stored.feature(name)["mean"] == pytest.approx(again.feature(name)["mean"])
    assert stored.feature("encoding")["counts"] == {"utf-8": stored.rows}
    train_texts = [row["text"] for row in pq.read_table(tmp_path / "reviews" / "train",
                                                        columns=["text"]).to_pylist()]
    counted = Counter(t for text in train_texts for t in tokenize(text,
                                                                  config.text.token_pattern))
    top = sorted(counted.items(), key=lambda kv: (-kv[1], kv[0]))[:statistics.TOP_TOKENS]
    assert stored.document["top_tokens"] == [list(pair) for pair in top]


def _validate(versions, tmp_path, *args: str):
    result = run_pipeline(["validate", "--json", "--report", str(tmp_path / "report.html"),
                           *args], cwd=tmp_path)
    return result, json.loads(result.stdout)


def test_two_halves_pass_and_the_report_shows_both(versions, tmp_path):
    result, outcome = _validate(versions, tmp_path, "--data", str(versions["odd"]),
                                "--reference", str(versions["even"]))
    assert result.returncode == 0, result.stderr[-2000:]
    assert outcome["status"] in ("ok", "warning")
    assert not [f for f in outcome["findings"] if f["severity"] == "error"]
    page = (tmp_path / "report.html").read_text()
    assert "brightness" in page and "<svg" in page and "Grey: what was compared with" in page


def test_inverted_brightness_exits_4_naming_brightness(versions, tmp_path):
    result, outcome = _validate(versions, tmp_path, "--data", str(versions["inverted"]),
                                "--reference", str(versions["even"]))
    assert result.returncode == 4, result.stderr[-2000:]
    assert "brightness" in result.stderr  # the message names the feature
    errors = {f["feature"] for f in outcome["findings"] if f["severity"] == "error"}
    assert "brightness" in errors and outcome["error"]["exit_code"] == 4


def test_inferred_expectations_pass_the_other_half_and_catch_inverted_brightness(versions,
                                                                                 tmp_path):
    expected = tmp_path / "expectations.yaml"
    inferred = run_pipeline(["validate", "--data", str(versions["even"]),
                             "--infer-expectations", str(expected)], cwd=tmp_path)
    assert inferred.returncode == 0, inferred.stderr[-2000:]
    assert "labels: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']" in expected.read_text()
    result, _ = _validate(versions, tmp_path, "--data", str(versions["odd"]),
                          "--expectations", str(expected))
    assert result.returncode == 0, result.stderr[-2000:]
    result, outcome = _validate(versions, tmp_path, "--data", str(versions["inverted"]),
                                "--expectations", str(expected))
    assert result.returncode == 4, result.stderr[-2000:]
    assert ("brightness", "range", "error") in {(f["feature"], f["check"], f["severity"])
                                                for f in outcome["findings"]}
