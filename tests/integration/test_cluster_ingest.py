"""The image ingest on a real Spark standalone cluster (master + 2 workers on 127.0.0.1),
submitted with ``pipeline submit`` (the library shipped to the executors as a zip)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.cluster import StandaloneCluster
from tests.procs import Background

# a standalone cluster, and an ingest of 5,000 images on it
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

PROBE = '''
import pipeline
from pipeline.config import load_config
from pyspark.sql import SparkSession

spark = SparkSession.builder.getOrCreate()
print("driver", pipeline.__file__, flush=True)
print("epochs", load_config().train.epochs, flush=True)  # default.yaml read inside the zip


def where(_):
    import pipeline.errors
    yield pipeline.errors.__file__


for path in spark.sparkContext.parallelize(range(2), 2).mapPartitions(where).collect():
    print("executor", path, flush=True)
spark.stop()
'''


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    started = StandaloneCluster(tmp_path_factory.mktemp("cluster"))
    yield started
    started.stop()


def _submit_args(cluster, raw, output):
    return ["submit", "ingest_images", "--master", cluster.url, "--executor-memory", "1g",
            "--conf", "spark.task.maxFailures=8", "spark.driver_memory=1g",
            "--", "--input", str(raw), "--output", str(output)]


def test_executors_import_the_shipped_zip_not_the_checkout(cluster, tmp_path):
    from pipeline.spark import log4j2_config
    from pipeline.submit import build_archive, build_command, spark_submit_path

    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    submission = build_command(
        script=probe, master=cluster.url, archive=build_archive(tmp_path / "build"),
        spark_submit=spark_submit_path(), python=sys.executable, log4j_config=log4j2_config(),
        spark_options=["--executor-memory", "1g"], driver_memory="1g")
    # outside the repository, and nothing on PYTHONPATH: the venv's editable install of the
    # checkout is the only other place the executors could import pipeline from
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | submission.env
    out = subprocess.run(submission.argv, env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    executors = re.findall(r"^executor (\S+)$", out.stdout, re.M)
    assert len(executors) == 2
    for path in executors:
        # each executor's copy of the zip, relative to its working directory
        assert re.search(r"pipeline-[0-9a-f]{12}\.zip/pipeline/errors\.py$", path), path
    # --py-files puts the zip first on the driver's path too
    driver = re.search(r"^driver (\S+)$", out.stdout, re.M).group(1)
    assert re.search(r"/pipeline-[0-9a-f]{12}\.zip/pipeline/__init__\.py$", driver), driver
    assert re.search(r"^epochs \d+$", out.stdout, re.M)


def test_same_fingerprint_as_local_even_when_a_worker_dies(cluster, digits_raw, digits_dataset,
                                                           tmp_path):
    """One ingest on the cluster, a worker killed while it decodes: Spark reruns the lost
    tasks on the other, and the version is the one the local ingest wrote."""
    _, local = digits_dataset
    job = Background(_submit_args(cluster, digits_raw, tmp_path / "degraded"), tmp_path,
                     merge_output=True)
    job.wait_for("decoding")
    assert job.process.poll() is None, "the job ended before a worker could be killed"
    cluster.kill_worker(1)
    code, _, out = job.finish()
    assert code == 0, out[-3000:]
    assert f"fingerprint {local.fingerprint}" in out
    assert re.search(r"discovered\s+5,000", out)
    assert cluster.alive_workers() == 1
    assert list((tmp_path / "build" / "submit").glob("pipeline-*.zip"))
