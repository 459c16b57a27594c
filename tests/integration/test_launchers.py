"""The same training through each launcher: local processes, hosts (two host names for this
machine), and Spark tasks on a standalone cluster started by the test (spark-submit)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.train.job import train
from tests.cluster import StandaloneCluster
from tests.conftest import REPO, make_config

pytestmark = pytest.mark.integration
SETTINGS = ("train.epochs=1", "train.reader_workers=1")
# the launchers differ in where ranks run, not in what they compute: on one machine the
# results agree to float precision; the stated tolerance leaves room for other hardware
TOLERANCE = 0.01


@pytest.fixture(scope="module")
def local_result(digits_dataset, tmp_path_factory):
    return train(make_config(tmp_path_factory.mktemp("local"), *SETTINGS), digits_dataset[0])


def test_hosts_launcher_places_one_rank_per_host(digits_dataset, local_result, tmp_path):
    cfg = make_config(tmp_path, *SETTINGS, "train.launcher=hosts",
                      "train.hosts=localhost:1,127.0.0.1:1")
    result = train(cfg, digits_dataset[0])
    assert result.local_ranks == [0, 0]  # two hosts: each rank is local rank 0 (its GPU slot)
    assert local_result.local_ranks == [0, 1]
    assert result.val_accuracy == pytest.approx(local_result.val_accuracy, abs=TOLERANCE)


def test_spark_launcher_on_a_standalone_cluster_matches_local(digits_dataset, local_result,
                                                              tmp_path):
    cluster = StandaloneCluster(tmp_path / "cluster")
    try:
        submit = Path(sys.executable).with_name("spark-submit")
        env = {**os.environ, "PYSPARK_PYTHON": sys.executable,
               "PYSPARK_DRIVER_PYTHON": sys.executable}
        out = subprocess.run(
            [str(submit), "--master", cluster.url, "--driver-memory", "1g",
             "--conf", "spark.executor.memory=1g", str(REPO / "jobs" / "train.py"),
             "--data", digits_dataset[0], *SETTINGS,
             f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlruns.db'}",
             f"mlflow.artifact_root={tmp_path / 'mlartifacts'}",
             f"train.checkpoint_dir={tmp_path / 'checkpoints'}"],
            capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    finally:
        cluster.stop()
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    # spark-submit merges the driver's stderr into its stdout
    assert "launching 2 Horovod workers as Spark tasks" in out.stdout
    accuracy = float(re.search(r"validation accuracy (\S+)", out.stdout).group(1))
    assert accuracy == pytest.approx(local_result.val_accuracy, abs=TOLERANCE)
