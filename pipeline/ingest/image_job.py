"""Spark wiring of the image ingest: discover inputs, map ``clean_image_file``, remove
duplicates, write a dataset version. Per-record logic lives in ``images``/``image_records``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import pandas as pd
from pyspark import Broadcast, StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipeline import storage
from pipeline.config import Config, ImagesConfig
from pipeline.datasets.commit import WriteMode, check_output
from pipeline.datasets.manifest import Manifest
from pipeline.datasets.reasons import Reason
from pipeline.datasets.schema import image_schema
from pipeline.datasets.writer import VersionSpec, write_version
from pipeline.errors import InputError
from pipeline.ingest.discover import (
    Discovered,
    classify_folder_file,
    listing_format,
    parse_listing,
    size_problem,
)
from pipeline.ingest.image_records import ROW_RULES, ImageRecord, clean_image_file
from pipeline.ingest.image_reuse import Reuse, Reused, reused_rows, with_images
from pipeline.ingest.rejection import Rejected
from pipeline.ingest.rows import jsonl_blank_lines
from pipeline.ingest.spark_dedup import apply_exact_duplicates
from pipeline.ingest.spark_labels import with_label_index
from pipeline.spark import SparkProgress, listing, read_files

log = logging.getLogger(__name__)

RECORD_SCHEMA = T.StructType([
    T.StructField("path", T.StringType(), False),
    T.StructField("label_name", T.StringType(), True),
    T.StructField("split", T.StringType(), True),
    T.StructField("image", T.BinaryType(), True),
    T.StructField("content_hash", T.StringType(), True),
    T.StructField("reason", T.StringType(), True),
    T.StructField("detail", T.StringType(), True),
    T.StructField("profile", T.StringType(), True),
])
assert tuple(RECORD_SCHEMA.names) == ImageRecord._fields


@dataclass(frozen=True)
class Inputs:
    """Every input discovered, before any is read: candidates with labels, and rejections."""

    source: str
    found: list[Discovered]
    read_from: list[str]  # where Spark's own reader looks (filesystems pyarrow cannot open)
    empty_folders: list[str]
    blank_lines: int | None = None  # a JSONL listing's blank lines: no input, but counted


def discover_folder(spark: SparkSession, input_uri: str, max_bytes: int | None = None
                    ) -> Inputs:
    """The files of a ``ROOT/<label>/<image>`` folder, each classified by where it lies and
    by its listed size (``max_bytes``: ``ingest.max_file_bytes``)."""
    root, files = listing.list_tree(spark, input_uri)
    found = [classify_folder_file(path, size, root, listing.escapes_root(path, root), max_bytes)
             for path, size in files]
    return Inputs(input_uri, found, [input_uri], listing.empty_folders(spark, root, files))


def _listed(path: str, size: int, label: str, max_bytes: int | None) -> Discovered:
    """A file a listing named and that exists: a candidate, or rejected by its size."""
    problem = size_problem(size, max_bytes)
    return Discovered(path, size, label) if problem is None else Discovered(path, size, label,
                                                                            *problem)


def discover_listing(spark: SparkSession, listing_uri: str, max_bytes: int | None = None
                     ) -> Inputs:
    """The rows of a CSV/JSONL listing, each found (with its size) or rejected; a listing
    that cannot be read at all is an ``InputError``."""
    try:
        fmt = listing_format(listing_uri)
        text = listing.read_text(spark, listing_uri)
        entries = parse_listing(text, fmt, listing_uri)
    except Rejected as rejected:
        raise InputError(f"listing {listing_uri}: {rejected.detail}") from None
    located = listing.locate(spark, [e.path for e in entries if e.reason is None])
    found = []
    for entry in entries:
        if entry.reason is not None:
            found.append(entry)
        elif entry.path not in located:
            found.append(Discovered(entry.path, 0, entry.label, Reason.MISSING_FILE,
                                    "listed but no such file"))
        else:
            found.append(_listed(*located[entry.path], entry.label, max_bytes))
    candidates = [d.path for d in found if d.reason is None]
    return Inputs(listing_uri, found, candidates, [],
                  jsonl_blank_lines(text) if fmt == "jsonl" else None)


def _clean_batches(batches: Iterator[pd.DataFrame], labels: Broadcast, images: ImagesConfig,
                   ratios: dict[str, float]) -> Iterator[pd.DataFrame]:
    """Batches of (path, content, error) -> batches of ``ImageRecord`` rows (mapInPandas); a
    file that could not be read is ``unreadable``, with the error."""
    wanted = labels.value  # read_files returns the candidates only
    for batch in batches:
        records = [clean_image_file(path, content, wanted[path], images, ratios)
                   if content is not None else
                   ImageRecord.rejected(path, wanted[path], Reason.UNREADABLE, error)
                   for path, content, error in zip(batch["path"], batch["content"],
                                                   batch["error"], strict=True)]
        yield pd.DataFrame.from_records(records, columns=list(ImageRecord._fields))


def _clean(spark: SparkSession, inputs: Inputs, images: ImagesConfig,
           ratios: dict[str, float], reused: Reused | None) -> DataFrame:
    """Every discovered input as one ``ImageRecord`` row, persisted: decoded, or ``reused``
    (then with the ``CARRIED`` column)."""
    done = reused.paths if reused is not None else frozenset()
    candidates = {d.path: d.label for d in inputs.found
                  if d.reason is None and d.path not in done}
    sizes = {d.path: d.size for d in inputs.found if d.path in candidates}
    rejected = [ImageRecord.rejected(d.path, d.label, d.reason, d.detail)
                for d in inputs.found if d.reason is not None]
    records = spark.createDataFrame(rejected, RECORD_SCHEMA)
    if reused is not None:
        records = records.unionByName(reused.rows, allowMissingColumns=True)
    # the cache is built inside the block (Spark's own reader plans its scan there)
    with SparkProgress(spark, "decode"), read_files(spark, sizes, inputs.read_from) as scan:
        if candidates:
            log.info("decoding %d candidate images in %d partitions", len(candidates),
                     scan.partitions)
            labels = spark.sparkContext.broadcast(candidates)
            cleaned = scan.map_batches(partial(_clean_batches, labels=labels, images=images,
                                               ratios=ratios), RECORD_SCHEMA)
            records = records.unionByName(cleaned, allowMissingColumns=True)
        records = records.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            records.count()
        except BaseException:
            records.unpersist()
            raise
    return records


def ingest_images(spark: SparkSession, cfg: Config, input_path: str | None, output_path: str,
                  mode: WriteMode = "error", listing_path: str | None = None,
                  attachments: dict[str, str] | None = None,
                  increment: frozenset[str] = frozenset(), reuse: Reuse | None = None
                  ) -> Manifest:
    """Raw images (a ``ROOT/<label>/<image>`` folder, or a CSV/JSONL listing of path,label)
    -> a committed dataset version in which every input is accepted or quarantined.

    ``attachments``: extra files (name -> text) committed with the version; ``increment``: the
    new and changed inputs (relative paths) whose statistics are kept apart too; ``reuse``: a
    previous version whose stored rows stand for the inputs that did not change."""
    if (input_path is None) == (listing_path is None):
        raise InputError("give either an input folder or a listing (--manifest), not both")
    output_uri = storage.to_uri(output_path)
    check_output(output_uri, mode)
    max_bytes = cfg.ingest.max_file_bytes
    if listing_path is not None:
        inputs = discover_listing(spark, storage.to_uri(listing_path), max_bytes)
    else:
        inputs = discover_folder(spark, storage.to_uri(input_path), max_bytes)
    if not inputs.found:
        raise InputError(f"no files found in {inputs.source}")
    for folder in inputs.empty_folders:
        log.warning("label folder %r holds no files", folder)
    log.info("discovered %d inputs in %s", len(inputs.found), inputs.source)

    return _build(spark, cfg, inputs, output_uri, mode, attachments or {}, increment, reuse)


def _build(spark: SparkSession, cfg: Config, inputs: Inputs, output_uri: str, mode: WriteMode,
           attachments: dict[str, str], increment: frozenset[str], reuse: Reuse | None
           ) -> Manifest:
    """The discovered ``inputs`` cleaned (or reused), deduplicated and written as a version."""
    ratios = cfg.split.model_dump()
    reused = (reused_rows(spark, reuse, inputs.found, inputs.source, cfg.images, ratios)
              if reuse is not None else None)
    cleaned = _clean(spark, inputs, cfg.images, ratios, reused)
    cached = [cleaned]
    try:
        records, label_map = with_label_index(apply_exact_duplicates(spark, cleaned))
        carried = []
        if reused is not None:  # after deduplication: it decides which stored files stay whole
            records, carried = with_images(spark, records, reused, cfg.dataset, label_map)
            cached.append(records.persist(StorageLevel.MEMORY_AND_DISK))
        records = (records.withColumn("source", F.col("path"))
                   .withColumn("original_width",
                               F.get_json_object("profile", "$.width").cast("int"))
                   .withColumn("original_height",
                               F.get_json_object("profile", "$.height").cast("int")))
        version = VersionSpec(
            kind="images", source=inputs.source, schema=image_schema(cfg.images),
            config={"images": cfg.images.model_dump(), "split": ratios,
                    "dataset": cfg.dataset.model_dump()},
            label_map=label_map, layout=cfg.dataset, order_column="content_hash",
            extra={"empty_label_folders": inputs.empty_folders, "row_rules": ROW_RULES,
                   "reused_rows": len(reused.paths) if reused is not None else 0,
                   "carried_files": len(carried)}
            | ({} if inputs.blank_lines is None else {"blank_lines": inputs.blank_lines}),
            attachments=attachments, increment=increment,
        )
        with SparkProgress(spark, "write"):
            return write_version(spark, records, len(inputs.found), output_uri, mode, version)
    finally:
        for frame in cached:
            frame.unpersist()
