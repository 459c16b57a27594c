"""The one place a SparkSession is built, from configuration (local, standalone, YARN, k8s)."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from pipeline.config import SparkConfig
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)



@functools.cache
def log4j2_config() -> Path:
    """Our log4j2 settings as a file the JVM can read (extracted when the package is a zip,
    as under spark-submit --py-files)."""
    packaged = resources.files("pipeline") / "resources" / "log4j2.properties"
    if isinstance(packaged, Path):
        return packaged
    extracted = Path(tempfile.mkdtemp(prefix="pipeline-log4j2-")) / "log4j2.properties"
    extracted.write_bytes(packaged.read_bytes())
    return extracted


class JavaMissingError(PipelineError, RuntimeError):
    """No Java runtime: Spark cannot start."""


def check_java() -> str:
    """Return the path of the ``java`` Spark will use, or raise with how to install one."""
    java_home = os.environ.get("JAVA_HOME")
    java = Path(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise JavaMissingError(
            "Java was not found (Spark needs Java 17). Install it, e.g. "
            "'sudo apt-get install -y openjdk-17-jre-headless' on Debian/Ubuntu, "
            "or set JAVA_HOME to a Java 17 installation."
        )
    return str(java)


def get_spark(cfg: SparkConfig, app_name: str | None = None):
    """Start (or reuse) the SparkSession described by ``cfg``, with JVM logging silenced."""
    check_java()
    from pyspark.sql import SparkSession

    # Executors must run the same interpreter as the driver (the project's venv).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    java_opts = f"-Dlog4j2.configurationFile={log4j2_config().as_uri()}"
    builder = (
        SparkSession.builder.appName(app_name or cfg.app_name)
        .config("spark.executor.extraJavaOptions", java_opts)
        .config("spark.executorEnv.PYTHONWARNINGS", "ignore::FutureWarning")
    )
    if "PYSPARK_GATEWAY_PORT" in os.environ:
        # under spark-submit: its --master and driver options are in force; do not override
        log.info("running under spark-submit; spark.master from its command line")
    else:
        builder = (builder.master(cfg.master)
                   .config("spark.driver.memory", cfg.driver_memory)
                   .config("spark.driver.extraJavaOptions", java_opts))
        log.info("starting Spark (master %s)", cfg.master)
    for key, value in cfg.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.log_level)
    return spark


class SparkProgress:
    """Logs the progress of running Spark stages every few seconds while the block runs."""

    def __init__(self, spark, what: str, every_s: float = 5.0) -> None:
        self._tracker = spark.sparkContext.statusTracker()
        self._what = what
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            for stage_id in self._tracker.getActiveStageIds():
                info = self._tracker.getStageInfo(stage_id)
                if info is not None:
                    log.info("%s: stage %d, %d/%d tasks done", self._what, stage_id,
                             info.numCompletedTasks, info.numTasks)

    def __enter__(self) -> SparkProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def packed_file_partitions(spark, sizes: list[int], partitions: int,
                           open_cost: int = 4096) -> Iterator[None]:
    """Make file sources pack ``sizes`` (bytes per file) into about ``partitions`` partitions.

    Spark counts 4 MB of cost per file by default, which gives one partition per ~32 small
    files and a task per partition: planned here, with no shuffle of the file contents.
    Applies to the actions run inside the block (file scans are planned when they run).
    """
    keys = ("spark.sql.files.openCostInBytes", "spark.sql.files.maxPartitionBytes")
    before = {key: spark.conf.get(key, None) for key in keys}
    total = sum(sizes) + open_cost * len(sizes)
    spark.conf.set(keys[0], str(open_cost))
    spark.conf.set(keys[1], str(max(open_cost, -(-total // max(1, partitions)))))
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)
