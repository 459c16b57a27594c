"""The one place a SparkSession is built, from configuration (local, standalone, YARN, k8s)."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline import storage
from pipeline.config import SparkConfig
from pipeline.errors import PipelineError

if TYPE_CHECKING:  # imported in get_spark: ``check_java`` must work without pyspark
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

# where executors send S3 requests: tasks read raw inputs through ``pipeline.storage``, which
# takes these from the environment (local mode inherits it; cluster executors get a copy)
EXECUTOR_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION")


@functools.cache
def log4j2_config() -> Path:
    """Our log4j2 settings as a file the JVM can read (extracted when the package is a zip,
    as under spark-submit --py-files)."""
    packaged = resources.files("pipeline") / "resources" / "log4j2.properties"
    if isinstance(packaged, Path):
        return packaged
    extracted = Path(storage.scratch_dir("pipeline-log4j2-")) / "log4j2.properties"
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


def get_spark(cfg: SparkConfig, app_name: str | None = None) -> SparkSession:
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
    for name in EXECUTOR_ENV:  # before cfg.conf, so that the configuration wins
        if os.environ.get(name):
            builder = builder.config(f"spark.executorEnv.{name}", os.environ[name])
    for key, value in cfg.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.log_level)
    return spark
