"""``pipeline ingest images`` as users run it: listings, version modes, the quality gate,
and a crash in the middle of writing."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from pipeline.datasets.manifest import NotADatasetError, open_version, read_manifest
from tests.procs import Background, run_pipeline

FAST = ["spark.master=local[2]", "spark.driver_memory=1g"]


def _small_tree(digits_raw, root, per_label=15, labels=("1", "7")):
    for label in labels:
        (root / label).mkdir(parents=True)
        for source in sorted((digits_raw / label).iterdir())[:per_label]:
            shutil.copy(source, root / label / source.name)
    return root


def test_listing_csv_and_jsonl_with_bad_rows(spark, config, digits_raw, tmp_path):
    """The CSV through the command (``--manifest``), the JSONL through its job in this
    process (one Spark start less)."""
    from pipeline.ingest.image_job import ingest_images

    one, seven = sorted((digits_raw / "1").iterdir())[:3], sorted((digits_raw / "7").iterdir())[:3]
    images = tmp_path / "images"
    images.mkdir()
    for path in [*one, *seven]:
        shutil.copy(path, images / path.name)
    rows = [(f"images/{p.name}", "one") for p in one] + [(str(images / p.name), "seven")
                                                       for p in seven]
    csv_lines = ["path,label", *[f"{p},{label}" for p, label in rows],
                 "images/missing.png,one",           # no such file
                 f"images/{one[0].name},one",        # the same path again
                 "images/x.png",                     # too few fields: no label
                 "a,b,c"]                            # more fields than the header
    (tmp_path / "list.csv").write_text("\n".join(csv_lines) + "\n")
    out = run_pipeline(["ingest", "images", "--manifest", str(tmp_path / "list.csv"),
                        "--output", str(tmp_path / "from_csv"), *FAST], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    manifest = read_manifest(str(tmp_path / "from_csv"))
    assert manifest.discovered == 10 and manifest.accounted()
    assert manifest.label_map == {"one": 0, "seven": 1}
    assert manifest.quarantine == {"bad_listing_row": 1, "duplicate_entry": 1,
                                   "missing_file": 1, "no_label": 1}

    jsonl = [json.dumps({"path": p, "label": label}) for p, label in rows]
    jsonl += ["{not json", "[1, 2]", json.dumps({"path": "images/" + one[1].name})]
    (tmp_path / "list.jsonl").write_text("\n".join([*jsonl[:2], "", *jsonl[2:]]) + "\n")
    from_jsonl = ingest_images(spark, config, None, str(tmp_path / "from_jsonl"),
                               listing_path=str(tmp_path / "list.jsonl"))
    assert from_jsonl.discovered == 9 and from_jsonl.accounted()
    assert from_jsonl.extra["blank_lines"] == 1  # 9 rows and 1 blank line: its 10 lines
    assert from_jsonl.quarantine == {"bad_listing_row": 2, "duplicate_entry": 1}
    # the same six images, whichever way they were listed
    assert from_jsonl.fingerprint == manifest.fingerprint


def test_modes_and_the_quality_gate(digits_raw, tmp_path):
    raw = _small_tree(digits_raw, tmp_path / "raw")
    (raw / "1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    versions = tmp_path / "versions"
    args = ["ingest", "images", "--input", str(raw), "--output", str(versions), *FAST]

    # each ingest starts a JVM: the two versions are also the two sides of the quality gate
    # (1 of 31 quarantined, 3.2%); the default gate (1.0) passes in the listing test above
    passed = run_pipeline([*args, "--mode", "new-version", "--max-bad-fraction", "0.05"],
                          tmp_path)
    assert passed.returncode == 0, passed.stderr[-3000:]
    assert re.search(r"discovered\s+31\s", passed.stdout), passed.stdout
    assert re.search(r"corrupt_image\s+1\s", passed.stdout), passed.stdout
    gated = run_pipeline([*args, "--mode", "new-version", "--max-bad-fraction", "0.01"],
                         tmp_path)
    assert gated.returncode == 3
    assert "quarantined, more than --max-bad-fraction" in gated.stderr
    # a gated version is committed all the same (its quarantine table is what to read)
    assert sorted(p.name for p in versions.iterdir()) == ["LATEST", "v0001", "v0002"]
    url, manifest = open_version(versions.as_uri())
    assert url.endswith("/v0002")
    assert manifest.fingerprint == read_manifest((versions / "v0001").as_uri()).fingerprint

    refused = run_pipeline([*args[:-2], "--output", str(versions / "v0001"), *FAST], tmp_path)
    assert refused.returncode == 1
    assert "already exists" in refused.stderr and "Traceback" not in refused.stderr


def test_crash_mid_write_leaves_no_dataset_and_rerun_completes(digits_raw, digits_dataset,
                                                               tmp_path):
    output = tmp_path / "digits"
    args = ["ingest", "images", "--input", str(digits_raw), "--output", str(output), *FAST]
    job = Background(args, tmp_path)
    job.wait_for("writing train")
    job.kill()
    with pytest.raises(NotADatasetError):
        read_manifest(output.as_uri())
    assert not output.exists()
    rerun = run_pipeline(args, tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert read_manifest(output.as_uri()).fingerprint == digits_dataset[1].fingerprint


@pytest.mark.parametrize("job", ["ingest_images", "ingest_text"])
def test_spark_submit_runs_the_job_entry_points(digits_raw, tmp_path, job):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import REPO

    if job == "ingest_images":
        raw = _small_tree(digits_raw, tmp_path / "raw")
    else:
        raw = tmp_path / "raw"
        for label, texts in {"pos": ["A warm, funny film.", "Great cast."],
                             "neg": ["Dull and long.", ""]}.items():
            (raw / label).mkdir(parents=True)
            for i, text in enumerate(texts):
                (raw / label / f"{i}.txt").write_text(text)
    submit = Path(sys.executable).with_name("spark-submit")
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable,
           "PYSPARK_DRIVER_PYTHON": sys.executable}
    out = subprocess.run([str(submit), "--master", "local[2]", str(REPO / "jobs" / f"{job}.py"),
                          "--input", str(raw), "--output", str(tmp_path / "out")],
                         capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    manifest = read_manifest((tmp_path / "out").as_uri())
    assert manifest.accounted()
    assert manifest.discovered == (30 if job == "ingest_images" else 4)
    # spark-submit's PythonRunner merges the driver's stderr into its stdout
    assert "running under spark-submit" in out.stdout
