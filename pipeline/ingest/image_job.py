"""Spark wiring of the image ingest: discover inputs, map ``clean_image_file``, remove
duplicates, write a dataset version. Per-record logic lives in ``images``/``image_records``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipeline.config import Config, ImagesConfig
from pipeline.datasets import storage
from pipeline.datasets.manifest import Manifest
from pipeline.datasets.schema import image_schema
from pipeline.datasets.writer import VersionSpec, WriteMode, check_output, write_version
from pipeline.errors import InputError
from pipeline.ingest import listing
from pipeline.ingest.dedup import DuplicateGroup, duplicate_decisions
from pipeline.ingest.discover import Discovered, classify_folder_file, listing_format, parse_listing
from pipeline.ingest.image_records import ImageRecord, clean_image_file
from pipeline.ingest.labels import build_label_map
from pipeline.ingest.rejection import Rejected
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

# binaryFile makes one partition per ~32 small files; we plan the parallelism instead
FILES_PER_PARTITION = 2000


@dataclass(frozen=True)
class Inputs:
    source: str
    found: list[Discovered]
    read_from: list[str]  # what binaryFile loads: the root folder, or the listed files
    empty_folders: list[str]


def discover_folder(spark: SparkSession, input_uri: str) -> Inputs:
    root, files = listing.list_tree(spark, input_uri)
    found = [classify_folder_file(path, size, root, listing.escapes_root(path, root))
             for path, size in files]
    return Inputs(input_uri, found, [input_uri], listing.empty_folders(spark, root))


def discover_listing(spark: SparkSession, listing_uri: str) -> Inputs:
    try:
        entries = parse_listing(listing.read_text(spark, listing_uri),
                                listing_format(listing_uri), listing_uri)
    except Rejected as rejected:
        raise InputError(f"listing {listing_uri}: {rejected.detail}") from None
    located = listing.locate(spark, [e.path for e in entries if e.reason is None])
    found = []
    for entry in entries:
        if entry.reason is not None:
            found.append(entry)
        elif entry.path not in located:
            found.append(Discovered(entry.path, 0, entry.label, "missing_file",
                                    "listed but no such file"))
        else:
            path, size = located[entry.path]
            found.append(Discovered(path, size, entry.label) if size else
                         Discovered(path, 0, entry.label, "empty_file", "the file has no bytes"))
    candidates = [d.path for d in found if d.reason is None]
    return Inputs(listing_uri, found, candidates, [])


def _clean_partition(rows, labels, images: ImagesConfig, ratios: dict[str, float]):
    wanted = labels.value
    for row in rows:
        label = wanted.get(row.path)
        if label is not None:  # files rejected at discovery are already accounted for
            yield clean_image_file(row.path, row.content, label, images, ratios)


def _clean(spark: SparkSession, inputs: Inputs, images: ImagesConfig,
           ratios: dict[str, float]) -> DataFrame:
    candidates = {d.path: d.label for d in inputs.found if d.reason is None}
    rejected = [ImageRecord(d.path, d.label, None, None, None, d.reason, d.detail)
                for d in inputs.found if d.reason is not None]
    parts = [spark.createDataFrame(rejected, RECORD_SCHEMA)] if rejected else []
    if candidates:
        files = (spark.read.format("binaryFile").option("recursiveFileLookup", "true")
                 .load(inputs.read_from))
        partitions = max(spark.sparkContext.defaultParallelism * 2,
                         -(-len(candidates) // FILES_PER_PARTITION))
        log.info("decoding %d candidate images in %d partitions", len(candidates), partitions)
        labels = spark.sparkContext.broadcast(candidates)
        cleaned = (files.select("path", "content").repartition(partitions).rdd
                   .mapPartitions(partial(_clean_partition, labels=labels, images=images,
                                          ratios=ratios)))
        parts.append(spark.createDataFrame(cleaned, RECORD_SCHEMA))
    records = parts[0]
    for part in parts[1:]:
        records = records.unionByName(part)
    records = records.persist(StorageLevel.MEMORY_AND_DISK)
    with SparkProgress(spark, "decode"):
        returned = {r.path for r in records.select("path").toLocalIterator()}
    lost = [ImageRecord(path, label, None, None, None, "unreadable",
                        "listed but not returned by Spark's binaryFile reader")
            for path, label in candidates.items() if path not in returned]
    if lost:
        records = records.unionByName(spark.createDataFrame(lost, RECORD_SCHEMA))
    return records


def _apply_duplicates(spark: SparkSession, records: DataFrame) -> DataFrame:
    """Same pixels twice: same label keeps one (``duplicate``), else ``conflicting_labels``."""
    groups = (records.filter(F.col("reason").isNull())
              .groupBy("content_hash")
              .agg(F.count("*").alias("n"),
                   F.collect_list(F.struct("path", "label_name")).alias("members"))
              .filter(F.col("n") > 1).collect())
    decisions = duplicate_decisions([
        DuplicateGroup([(m.path, m.label_name) for m in g.members]) for g in groups])
    if not decisions:
        return records
    log.info("%d inputs are duplicates of another", len(decisions))
    table = spark.createDataFrame([(p, r, d) for p, (r, d) in decisions.items()],
                                  "path string, dup_reason string, dup_detail string")
    joined = records.join(F.broadcast(table), "path", "left")
    is_dup = F.col("dup_reason").isNotNull()
    return joined.select(
        "path", "label_name",
        F.when(is_dup, F.lit(None)).otherwise(F.col("split")).alias("split"),
        F.when(is_dup, F.lit(None)).otherwise(F.col("image")).alias("image"),
        "content_hash",
        F.coalesce("dup_reason", "reason").alias("reason"),
        F.coalesce("dup_detail", "detail").alias("detail"))


def ingest_images(spark: SparkSession, cfg: Config, input_path: str | None, output_path: str,
                  mode: WriteMode = "error", listing_path: str | None = None) -> Manifest:
    """Raw images (a ``ROOT/<label>/<image>`` folder, or a CSV/JSONL listing of path,label)
    -> a committed dataset version in which every input is accepted or quarantined."""
    if (input_path is None) == (listing_path is None):
        raise InputError("give either an input folder or a listing (--manifest), not both")
    output_uri = storage.to_uri(output_path)
    check_output(output_uri, mode)
    if listing_path is not None:
        inputs = discover_listing(spark, storage.to_uri(listing_path))
    else:
        inputs = discover_folder(spark, storage.to_uri(input_path))
    if not inputs.found:
        raise InputError(f"no files found in {inputs.source}")
    for folder in inputs.empty_folders:
        log.warning("label folder %r holds no files", folder)
    log.info("discovered %d inputs in %s", len(inputs.found), inputs.source)

    ratios = cfg.split.model_dump()
    records = _clean(spark, inputs, cfg.images, ratios)
    try:
        records = _apply_duplicates(spark, records)
        labels = {r[0] for r in records.filter(F.col("reason").isNull())
                  .select("label_name").distinct().collect()}
        label_map = build_label_map(labels)
        label_index = F.create_map(*[F.lit(x) for kv in label_map.items() for x in kv])
        records = (records.withColumn("label", label_index[F.col("label_name")].cast("int"))
                   .withColumn("source", F.col("path")))
        version = VersionSpec(
            kind="images", source=inputs.source, schema=image_schema(cfg.images),
            config={"images": cfg.images.model_dump(), "split": ratios,
                    "dataset": cfg.dataset.model_dump()},
            label_map=label_map, rows_per_row_group=cfg.dataset.rows_per_row_group,
            row_group_size_mb=cfg.dataset.row_group_size_mb, order_column="content_hash",
            extra={"empty_label_folders": inputs.empty_folders},
        )
        with SparkProgress(spark, "write"):
            manifest = write_version(spark, records, len(inputs.found), output_uri, mode,
                                     version)
    finally:
        records.unpersist()
    return manifest
