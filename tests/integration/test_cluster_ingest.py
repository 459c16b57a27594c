"""The image ingest on a real Spark standalone cluster (master + 2 workers on 127.0.0.1)."""

from __future__ import annotations

import re

import pytest

from tests.cluster import StandaloneCluster
from tests.procs import Background

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    started = StandaloneCluster(tmp_path_factory.mktemp("cluster"))
    yield started
    started.stop()


def _submit_args(cluster, raw, output):
    return ["ingest", "images", "--input", str(raw), "--output", str(output),
            f"spark.master={cluster.url}", "spark.driver_memory=1g",
            "spark.conf.spark.executor.memory=1g", "spark.conf.spark.task.maxFailures=8"]


def test_same_fingerprint_as_local_even_when_a_worker_dies(cluster, digits_raw, digits_dataset,
                                                           tmp_path):
    _, local = digits_dataset
    healthy = Background(_submit_args(cluster, digits_raw, tmp_path / "healthy"), tmp_path)
    code, out, err = healthy.finish()
    assert code == 0, err[-3000:]
    assert f"fingerprint {local.fingerprint}" in out

    job = Background(_submit_args(cluster, digits_raw, tmp_path / "degraded"), tmp_path)
    job.wait_for("decoding")
    assert job.process.poll() is None, "the job ended before a worker could be killed"
    cluster.kill_worker(1)
    code, out, err = job.finish()
    assert code == 0, err[-3000:]
    assert f"fingerprint {local.fingerprint}" in out
    assert re.search(r"discovered\s+5,000", out)
    assert cluster.alive_workers() == 1
