"""Spark wiring of the image ingest: discover files, map ``clean_image_file``, write a version."""

from __future__ import annotations

import logging
from functools import partial

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipeline.config import Config
from pipeline.datasets import storage
from pipeline.datasets.manifest import Manifest
from pipeline.datasets.schema import image_schema
from pipeline.datasets.writer import VersionSpec, WriteMode, check_output, write_version
from pipeline.errors import InputError
from pipeline.ingest.image_records import ImageRecord, clean_image_file, skipped_file_record
from pipeline.ingest.images import ImageSpec
from pipeline.ingest.labels import build_label_map
from pipeline.spark import SparkProgress

log = logging.getLogger(__name__)

RECORD_SCHEMA = T.StructType([
    T.StructField("path", T.StringType(), False),
    T.StructField("label_name", T.StringType(), True),
    T.StructField("split", T.StringType(), True),
    T.StructField("image", T.BinaryType(), True),
    T.StructField("content_hash", T.StringType(), True),
    T.StructField("reason", T.StringType(), True),
    T.StructField("detail", T.StringType(), True),
])
assert tuple(RECORD_SCHEMA.names) == ImageRecord._fields

FILES_PER_PARTITION = 2000


def _hadoop_fs(spark: SparkSession, uri: str):
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def list_files(spark: SparkSession, uri: str) -> tuple[str, list[tuple[str, int]]]:
    """(root as Spark spells it, [(path, size)] of every file below it) via Hadoop's listing.

    Spark's ``binaryFile`` source silently skips empty and hidden files; this listing does not,
    so those inputs are counted and quarantined rather than lost.
    """
    filesystem, path = _hadoop_fs(spark, uri)
    root = filesystem.makeQualified(path).toString()
    if not filesystem.exists(path):
        raise InputError(f"input {uri} does not exist")
    found = []
    listing = filesystem.listFiles(path, True)
    while listing.hasNext():
        status = listing.next()
        found.append((status.getPath().toString(), int(status.getLen())))
    return root, found


def _clean_partition(rows, root: str, spec: ImageSpec, ratios: dict[str, float]):
    for row in rows:
        yield clean_image_file(row.path, row.content, root, spec, ratios)


def _skipped_by_spark(spark: SparkSession, listed: list[tuple[str, int]],
                      files) -> list[ImageRecord]:
    """Records for listed files that ``binaryFile`` did not return (empty or hidden files)."""
    read = {row.path for row in files.select("path").toLocalIterator()}
    return [skipped_file_record(path, size) for path, size in listed if path not in read]


def ingest_images(spark: SparkSession, cfg: Config, input_path: str, output_path: str,
                  mode: WriteMode = "error") -> Manifest:
    """Turn a folder of ``<label>/<image>`` files into a committed dataset version."""
    input_uri, output_uri = storage.to_uri(input_path), storage.to_uri(output_path)
    check_output(output_uri, mode)
    spec = ImageSpec(cfg.images.height, cfg.images.width, cfg.images.png_compression,
                     cfg.images.max_pixels)
    ratios = cfg.split.model_dump()
    root, listed = list_files(spark, input_uri)
    discovered = len(listed)
    if discovered == 0:
        raise InputError(f"no files found under {input_uri}")
    files = (spark.read.format("binaryFile").option("recursiveFileLookup", "true")
             .load(input_uri))
    # binaryFile makes one partition per ~32 small files; plan the parallelism instead
    parallelism = spark.sparkContext.defaultParallelism
    partitions = max(parallelism * 2, -(-discovered // FILES_PER_PARTITION))
    log.info("ingesting %d files from %s in %d partitions", discovered, input_uri, partitions)

    cleaned = (files.select("path", "content").repartition(partitions).rdd
               .mapPartitions(partial(_clean_partition, root=root, spec=spec, ratios=ratios)))
    records = spark.createDataFrame(cleaned, RECORD_SCHEMA)
    skipped = _skipped_by_spark(spark, listed, files)
    if skipped:
        records = records.unionByName(spark.createDataFrame(skipped, RECORD_SCHEMA))
    records = records.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        with SparkProgress(spark, "decode"):
            labels = {r[0] for r in records.select("label_name").distinct().collect() if r[0]}
        label_map = build_label_map(labels)
        label_index = F.create_map(*[F.lit(x) for kv in label_map.items() for x in kv])
        records = records.withColumn("label", label_index[F.col("label_name")].cast("int"))
        records = records.withColumn("source", F.col("path"))
        version = VersionSpec(
            kind="images", source=input_uri,
            schema=image_schema(spec.height, spec.width),
            config={"images": cfg.images.model_dump(), "split": ratios},
            label_map=label_map, rows_per_row_group=cfg.dataset.rows_per_row_group,
            row_group_size_mb=cfg.dataset.row_group_size_mb, order_column="content_hash",
        )
        with SparkProgress(spark, "write"):
            manifest = write_version(spark, records, discovered, output_uri, mode, version)
    finally:
        records.unpersist()
    log.info("dataset version: %s", summary_line(manifest))
    return manifest


def summary_line(manifest: Manifest) -> str:
    parts = [f"discovered {manifest.discovered}"]
    parts += [f"{name} {info.rows} ({info.row_groups} row groups)"
              for name, info in manifest.splits.items()]
    parts.append(f"quarantined {manifest.quarantined}")
    if manifest.quarantine:
        parts.append(", ".join(f"{k}: {v}" for k, v in manifest.quarantine.items()))
    return "; ".join(parts)
