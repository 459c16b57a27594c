"""The pipeline with every location on ``s3://``, against a real S3 API (moto_server on
127.0.0.1) reached only through the AWS environment: raw images -> ingest -> training with
checkpoints and MLflow artifacts on S3 -> registry -> evaluation -> batch inference; and an
input over the size cap is quarantined from its listed size."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import storage
from pipeline.datasets.manifest import open_version
from pipeline.evaluation.job import evaluate
from pipeline.inference.job import predict_files
from pipeline.ingest.image_job import ingest_images
from tests.conftest import fresh_store, make_config

PER_LABEL = 60  # 600 real digits: enough row groups for 2 workers, quick to train


def _upload(s3, raw: Path, bucket: str, prefix: str, per_label: int) -> int:
    client, count = s3.client(), 0
    for folder in sorted(p for p in raw.iterdir() if p.is_dir()):
        for image in sorted(folder.iterdir())[:per_label]:
            client.put_object(Bucket=bucket, Key=f"{prefix}/{folder.name}/{image.name}",
                              Body=image.read_bytes())
            count += 1
    return count


@pytest.fixture(scope="module")
def flow(s3, spark, digits_raw, tmp_path_factory):
    root = s3.bucket("flow")
    uploaded = _upload(s3, digits_raw, "flow", "raw", PER_LABEL)
    s3.client().put_object(Bucket="flow", Key="raw/3/huge.png", Body=b"\x89PNG" + b"0" * 5000)
    cfg = make_config(tmp_path_factory.mktemp("s3flow"), "dataset.rows_per_row_group=16",
                      "ingest.max_file_bytes=4096", "train.epochs=1",
                      f"train.checkpoint_dir={root}/checkpoints",
                      f"mlflow.artifact_root={root}/mlartifacts")
    manifest = ingest_images(spark, cfg, f"{root}/raw", f"{root}/datasets/digits",
                             mode="new-version")
    return cfg, root, uploaded, manifest, digits_raw


def test_ingest_reads_and_writes_s3_and_quarantines_the_oversized_file(flow, s3):
    _, root, uploaded, manifest, _ = flow
    assert manifest.discovered == uploaded + 1
    assert manifest.quarantine.get("too_large") == 1
    assert manifest.extra["version_uri"] == f"{root}/datasets/digits/v0001"
    keys = s3.keys("flow", "datasets/digits/v0001/")
    assert "datasets/digits/v0001/manifest.json" in keys
    assert any(k.startswith("datasets/digits/v0001/train/") and k.endswith(".parquet")
               for k in keys)
    quarantine = pq.read_table(io.BytesIO(storage.read_bytes(next(
        f"s3://flow/{k}" for k in keys if k.startswith("datasets/digits/v0001/quarantine/")
        and k.endswith(".parquet")))))
    assert quarantine.column("path").to_pylist() == ["s3://flow/raw/3/huge.png"]
    url, reopened = open_version(f"{root}/datasets/digits")
    assert url.endswith("/v0001") and reopened.fingerprint == manifest.fingerprint


def test_a_killed_training_resumes_on_s3_and_its_model_is_evaluated_and_applied_there(
        flow, s3, spark, tmp_path):
    """``--resume`` reads ``latest.json`` and the checkpoint from ``s3://`` and finishes the
    same run (as tests/integration/test_resume.py does on local disk); the model it logged to
    ``s3://`` is evaluated on the version there and predicts files from and into ``s3://``."""
    import json
    import os
    import signal
    import time

    from tests.integration.test_resume import _rank_pid
    from tests.procs import Background, run_pipeline

    _, root, _, manifest, raw = flow
    epochs = 6  # as test_resume.py: the kill comes right after the first checkpoint
    settings = [f"mlflow.tracking_uri={fresh_store(tmp_path)}",
                f"mlflow.artifact_root={root}/resume-artifacts",
                f"train.checkpoint_dir={root}/resume-checkpoints", f"train.epochs={epochs}"]
    data = f"{root}/datasets/digits"
    job = Background(["train", "--data", data, *settings], tmp_path)
    deadline = time.monotonic() + 300
    while not any(k.endswith("/latest.json") for k in s3.keys("flow", "resume-checkpoints/")):
        assert job.process.poll() is None, job.log.read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint was written to S3"
        time.sleep(0.2)
    pid = _rank_pid(job.process.pid, 1)
    assert pid is not None, "rank 1 not found"
    os.kill(pid, signal.SIGKILL)
    code, _, err = job.finish(timeout_s=120)
    assert code == 1, err[-3000:]

    (pointer,) = [k for k in s3.keys("flow", "resume-checkpoints/") if k.endswith("latest.json")]
    saved = json.loads(storage.read_text(f"s3://flow/{pointer}"))["epoch"]
    assert saved < epochs - 1, "the kill came after the last epoch"
    done = run_pipeline(["train", "--data", data, "--resume", *settings], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"epochs {saved + 2}-{epochs} of {epochs}" in done.stdout
    run_id = pointer.split("/")[1]
    assert run_id in done.stdout + done.stderr  # the same run id
    kept = s3.keys("flow", f"resume-checkpoints/{run_id}/")
    assert {k.split("/")[2] for k in kept if "/epoch-" in k} >= {f"epoch-{epochs - 1:04d}"}
    artifacts = s3.keys("flow", "resume-artifacts/")
    assert any(k.endswith("dataset/manifest.json") for k in artifacts)
    assert any("MLmodel" in k for k in artifacts)

    cfg = make_config(tmp_path)  # the same tracking store as the training's
    registered = re.search(r"^registered .+ \((models:/\S+)\) as challenger$", done.stdout, re.M)
    assert registered, done.stdout
    model = registered.group(1)
    scored = evaluate(cfg, model, data, "test")
    assert scored.scores.rows == manifest.splits["test"].rows
    _upload(s3, raw, "flow", "new", 3)
    summary = predict_files(spark, cfg, model, f"{root}/new", f"{root}/predictions")
    assert summary.inputs == 30 and summary.predicted == 30
    written = [k for k in s3.keys("flow", "predictions/") if k.endswith(".parquet")]
    rows = sum(pq.read_table(io.BytesIO(storage.read_bytes(f"s3://flow/{k}"))).num_rows
               for k in written)
    assert rows == 30


def test_a_retrains_version_on_s3_copies_the_untouched_files(flow, s3, spark):
    """New digits arrive; the next version reuses the previous one's rows, copies its files
    whose rows all stay (the same bytes under the new version's key), and reads back as a
    whole through Petastorm."""
    from pipeline.datasets.reader import read_batches
    from pipeline.ingest.image_reuse import Reuse

    cfg, root, _, first, raw = flow
    client, new = s3.client(), []
    for folder in sorted(p for p in raw.iterdir() if p.is_dir()):
        image = sorted(folder.iterdir())[PER_LABEL]  # the next digit of each label
        client.put_object(Bucket="flow", Key=f"raw/{folder.name}/{image.name}",
                          Body=image.read_bytes())
        new.append(f"{folder.name}/{image.name}")
    unchanged = frozenset(k.removeprefix("raw/") for k in s3.keys("flow", "raw/")) - set(new)
    second = ingest_images(spark, cfg, f"{root}/raw", f"{root}/datasets/digits",
                           mode="new-version",
                           reuse=Reuse(first.extra["version_uri"], unchanged))
    accepted = sum(info.rows for info in first.splits.values())
    assert second.extra["reused_rows"] == accepted
    assert sum(info.rows for info in second.splits.values()) == accepted + len(new)
    assert second.extra["carried_files"] > 0
    before = {k.split("/", 3)[3]: k for k in s3.keys("flow", "datasets/digits/v0001/")
              if k.endswith(".parquet")}
    after = {k.split("/", 3)[3] for k in s3.keys("flow", "datasets/digits/v0002/")
             if k.endswith(".parquet")}
    copied = sorted(set(before) & after)
    assert len(copied) == second.extra["carried_files"]
    for name in copied:
        assert (storage.read_bytes(f"{root}/datasets/digits/v0002/{name}")
                == storage.read_bytes(f"{root}/{before[name]}"))
    read = sum(len(batch["label"]) for split in second.splits
               for batch in read_batches(second.extra["version_uri"], split, ("label",), 64))
    assert read == accepted + len(new)
