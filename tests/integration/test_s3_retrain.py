"""``pipeline retrain`` as a scheduler runs it, with its raw input and dataset versions on
``s3://`` (a real S3 API on 127.0.0.1, reached through the AWS environment only) and its lock
on local disk, as the README says: the first run builds v0001 and a champion, the second finds
nothing new."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from tests.conftest import fresh_store
from tests.integration.test_s3_pipeline import _upload
from tests.procs import run_pipeline

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def test_retrain_reads_and_writes_s3(s3, digits_raw, tmp_path):
    root = s3.bucket("retrain")
    _upload(s3, digits_raw, "retrain", "raw", 30)
    config = tmp_path / "retrain.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"), "spark": {"master": "local[2]"},
        "dataset": {"rows_per_row_group": 8},
        "train": {"epochs": 1, "checkpoint_dir": f"{root}/checkpoints"},
        "mlflow": {"tracking_uri": fresh_store(tmp_path),
                   "artifact_root": f"{root}/mlartifacts"},
        "retrain": {"kind": "images", "input": f"{root}/raw", "output": f"{root}/versions",
                    "lock_dir": str(tmp_path / "lock")}}))
    env = {**os.environ, **s3.env}
    first = run_pipeline(["retrain", "--config", str(config), "--json"], tmp_path, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    outcome = json.loads(first.stdout)
    assert outcome["built"] and outcome["dataset_url"] == f"{root}/versions/v0001"
    assert outcome["promotion"]["decision"]["promote"]
    keys = s3.keys("retrain", "versions/v0001/")
    assert {"versions/v0001/manifest.json", "versions/v0001/inputs.json"} <= set(keys)
    again = run_pipeline(["retrain", "--config", str(config), "--json"], tmp_path, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert not json.loads(again.stdout)["built"] and "nothing to do" in json.loads(
        again.stdout)["summary"]
