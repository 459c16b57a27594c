"""The Spark adapter: every place the pipeline talks to Spark itself rather than through
DataFrames. Importing it does not import pyspark (``pipeline doctor`` checks Java first).

Public (what the CLI, the jobs, inference and the tests call):

* ``get_spark``, ``check_java``, ``log4j2_config``, ``JavaMissingError`` (``session``): the
  one SparkSession, built from configuration;
* ``SparkProgress`` (``progress``): the progress of the running stages while a block runs;
* ``read_files``, ``FileScan``, ``packed_file_partitions`` (``files``): the one reader of raw
  files, one ``(path, content, error)`` row per wanted file in planned partitions, read by the
  tasks through ``pipeline.storage`` (Spark's ``binaryFile`` for other filesystems);
* ``pipeline.spark.listing``: raw inputs listed on the driver, through the storage layer
  (local, s3, s3a, hdfs) or Hadoop's FileSystem (``list_tree``, ``read_text``,
  ``empty_folders``, ``locate``, ``escapes_root``, ``through_storage``).

Internal: ``files.file_partitions``, ``files.plan_partitions`` and the modules' constants and
helpers.
"""

from __future__ import annotations

from pipeline.spark.files import FileScan, packed_file_partitions, read_files
from pipeline.spark.progress import SparkProgress
from pipeline.spark.session import JavaMissingError, check_java, get_spark, log4j2_config

__all__ = ["FileScan", "JavaMissingError", "SparkProgress", "check_java", "get_spark",
           "log4j2_config", "packed_file_partitions", "read_files"]
