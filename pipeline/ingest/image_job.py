"""Spark wiring of the image ingest: discover inputs, map ``clean_image_file``, remove
duplicates, write a dataset version. Per-record logic lives in ``images``/``image_records``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial, reduce

import pandas as pd
import pyarrow as pa
from pyspark import Broadcast, StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipeline import storage
from pipeline.config import Config, ImagesConfig
from pipeline.datasets.commit import WriteMode, check_output
from pipeline.datasets.manifest import Manifest, open_version
from pipeline.datasets.parquet import read_columns, read_frame
from pipeline.datasets.reasons import Reason
from pipeline.datasets.schema import image_schema
from pipeline.datasets.statistics import relative_path
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


@dataclass(frozen=True)
class Reuse:
    """A retrain's previous version: its rows stand for the inputs not in ``fresh`` (new or
    changed since it was built; paths relative to the input root), which are not read again."""

    version_uri: str
    fresh: frozenset[str]


@dataclass(frozen=True)
class Reused:
    rows: DataFrame  # ImageRecord rows read back from the previous version
    paths: frozenset[str]


def _why_not_reusable(manifest: Manifest, cfg: Config) -> str | None:
    """Why a previous version's rows are not what decoding the same files would give now."""
    if manifest.kind != "images" or manifest.extra.get("row_rules") != ROW_RULES:
        return "it was built by other rules (an earlier release)"
    if manifest.config.get("images") != cfg.images.model_dump():
        return "its images.* settings differ"
    return None


def _kept_rows(table: pa.Table, wanted: dict[str, str]) -> pa.Table:
    """The stored rows of inputs in ``wanted`` (source -> label) with the same label."""
    labels = [wanted.get(source) for source in table.column("source").to_pylist()]
    same = [label is not None and label == stored
            for label, stored in zip(labels, table.column("label_name").to_pylist(), strict=True)]
    return table.filter(pa.array(same, pa.bool_()))


# the stored columns a reused row is made of, as the record names them
STORED = {"source": "path string", "label_name": "label_name string", "image": "image binary",
          "content_hash": "content_hash string", "profile": "profile string"}


def _stored_rows(spark: SparkSession, version_uri: str, splits: list[str],
                 keep: Callable[[pa.Table], pa.Table]) -> DataFrame:
    """The ``STORED`` columns of a version's rows that ``keep`` selects, with their
    ``_split``."""
    schema = ", ".join(STORED.values())
    frames = [read_frame(spark, storage.join(version_uri, split), list(STORED), schema, keep)
              .withColumn("_split", F.lit(split)) for split in splits]
    return reduce(DataFrame.unionByName, frames)


def _unchanged(path: str, root: str, fresh: frozenset[str]) -> bool:
    relative = relative_path(path, root)
    return relative is not None and relative not in fresh


def _reuse(spark: SparkSession, reuse: Reuse, inputs: Inputs, cfg: Config) -> Reused | None:
    """The previous version's accepted rows of the candidates that did not change, or None
    when its rows cannot stand for a fresh decode (then every input is read)."""
    version_uri, manifest = open_version(reuse.version_uri)
    why_not = _why_not_reusable(manifest, cfg)
    if why_not is not None:
        log.info("reading every input again, not reusing %s: %s", reuse.version_uri, why_not)
        return None
    splits = list(manifest.splits)
    if not splits:
        return None
    wanted = {d.path: d.label for d in inputs.found
              if d.reason is None and _unchanged(d.path, inputs.source, reuse.fresh)}
    keep = partial(_kept_rows, wanted=wanted)
    # the paths first, from two small columns read here; the rows once, into the cache
    paths = frozenset(path for split in splits for path in keep(read_columns(
        storage.join(version_uri, split), ["source", "label_name"])).column("source").to_pylist())
    rows = _stored_rows(spark, version_uri, splits, keep)
    filled = {"split": F.col("_split"), "reason": F.lit(None).cast("string"),
              "detail": F.lit(None).cast("string")}
    rows = rows.select(*[filled.get(name, F.col(name)).alias(name)
                         for name in RECORD_SCHEMA.names])
    log.info("reusing the rows of %d unchanged inputs from %s", len(paths), reuse.version_uri)
    return Reused(rows, paths)


def _clean(spark: SparkSession, inputs: Inputs, images: ImagesConfig,
           ratios: dict[str, float], reused: Reused | None) -> DataFrame:
    """Every discovered input as one ``ImageRecord`` row, persisted: decoded, or ``reused``."""
    done = reused.paths if reused is not None else frozenset()
    candidates = {d.path: d.label for d in inputs.found
                  if d.reason is None and d.path not in done}
    sizes = {d.path: d.size for d in inputs.found if d.path in candidates}
    rejected = [ImageRecord.rejected(d.path, d.label, d.reason, d.detail)
                for d in inputs.found if d.reason is not None]
    records = spark.createDataFrame(rejected, RECORD_SCHEMA)
    if reused is not None:
        records = records.unionByName(reused.rows)
    # the cache is built inside the block (Spark's own reader plans its scan there)
    with SparkProgress(spark, "decode"), read_files(spark, sizes, inputs.read_from) as scan:
        if candidates:
            log.info("decoding %d candidate images in %d partitions", len(candidates),
                     scan.partitions)
            labels = spark.sparkContext.broadcast(candidates)
            cleaned = scan.rows.mapInPandas(partial(_clean_batches, labels=labels, images=images,
                                                    ratios=ratios), RECORD_SCHEMA)
            records = records.unionByName(cleaned)
        records = records.persist(StorageLevel.MEMORY_AND_DISK)
        records.count()
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

    ratios = cfg.split.model_dump()
    reused = _reuse(spark, reuse, inputs, cfg) if reuse is not None else None
    records = _clean(spark, inputs, cfg.images, ratios, reused)
    try:
        records = apply_exact_duplicates(spark, records)
        records, label_map = with_label_index(records)
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
                   "reused_rows": len(reused.paths) if reused is not None else 0}
            | ({} if inputs.blank_lines is None else {"blank_lines": inputs.blank_lines}),
            attachments=attachments or {}, increment=increment,
        )
        with SparkProgress(spark, "write"):
            manifest = write_version(spark, records, len(inputs.found), output_uri, mode,
                                     version)
    finally:
        records.unpersist()
    return manifest
