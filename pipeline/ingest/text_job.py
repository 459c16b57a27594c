"""Spark wiring of the text ingest: read documents and rows in any of the usual shapes, map
``clean_text_document``, remove exact and near duplicates, build the vocabulary on the train
split, and write a dataset version with ``vocab.txt``. Per-record logic: ``text``, ``tokens``,
``text_records``, ``rows``."""

from __future__ import annotations

import logging
import pickle
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import partial, reduce
from typing import Any, Literal

from pyspark import Broadcast, StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipeline import storage
from pipeline.config import Config, TextConfig
from pipeline.datasets.commit import WriteMode, check_output
from pipeline.datasets.manifest import Manifest
from pipeline.datasets.reasons import Reason
from pipeline.datasets.schema import text_schema
from pipeline.datasets.statistics import TOP_TOKENS
from pipeline.datasets.writer import VersionSpec, write_version
from pipeline.errors import InputError, first_line
from pipeline.ingest.discover import classify_data_file, classify_folder_file, is_hidden
from pipeline.ingest.rows import RowFormat
from pipeline.ingest.spark_dedup import apply_exact_duplicates, apply_near_duplicates
from pipeline.ingest.spark_labels import with_label_index
from pipeline.ingest.text_batches import (
    Item,
    clean_items,
    count_tokens,
    file_records,
    unit_records,
    with_token_ids,
)
from pipeline.ingest.text_records import RawDocument, TextRecord, file_rows
from pipeline.ingest.text_splits import (
    SPLIT_BYTES,
    TASKS_PER_CORE,
    RowGroup,
    nominal_ranges,
    plan_ranges,
    range_bytes,
    read_footer,
    read_range,
    read_row_group,
    row_slices,
    scan_file_range,
    spark_file_path,
)
from pipeline.ingest.tokens import build_vocab, parse_vocab, vocab_text
from pipeline.spark import SparkProgress, listing, read_files

log = logging.getLogger(__name__)

TextFormat = Literal["auto", "folders", "csv", "jsonl", "parquet"]
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
              ".parquet": "parquet", ".txt": "folders"}

RECORD_SCHEMA = T.StructType([
    T.StructField("source", T.StringType(), False),
    T.StructField("line", T.IntegerType(), True),
    T.StructField("label_name", T.StringType(), True),
    T.StructField("split", T.StringType(), True),
    T.StructField("text", T.StringType(), True),
    T.StructField("content_hash", T.StringType(), True),
    T.StructField("n_tokens", T.IntegerType(), True),
    T.StructField("reason", T.StringType(), True),
    T.StructField("detail", T.StringType(), True),
    T.StructField("profile", T.StringType(), True),
    T.StructField("blank_lines", T.IntegerType(), False),
])
assert tuple(RECORD_SCHEMA.names) == TextRecord._fields


def _extension(path: str) -> str:
    """The lower-cased extension of a path's file name, with its dot ("" without one)."""
    name = path.rsplit("/", 1)[-1]
    return "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""


def choose_format(root: str, files: list[tuple[str, int]]) -> tuple[str, str]:
    """(format, why) from the input's files: one kind of extension decides."""
    visible = [path for path, _ in files if not is_hidden(path, root)]
    kinds = Counter(EXTENSIONS.get(_extension(path), "other") for path in visible)
    if len(kinds) == 1 and "other" not in kinds:
        kind = next(iter(kinds))
        return kind, f"all {len(visible)} visible files are {kind}"
    raise InputError(f"cannot tell the format of {root} (files: {dict(kinds)}); "
                     "pass --format folders|csv|jsonl|parquet")


@dataclass(frozen=True)
class _Documents:
    """What was read: the format, and every input listed as one cleaned record (``TextRecord``
    rows, the quarantined ones included), read or not."""

    fmt: str
    records: DataFrame  # persisted: the caller unpersists
    discovered: int  # inputs
    blank_lines: int  # blank JSONL lines, which are no input


def _records(spark: SparkSession, parts: list[DataFrame]) -> DataFrame:
    """The parts as one frame of ``RECORD_SCHEMA`` rows (an empty one without parts)."""
    return reduce(DataFrame.unionByName, parts) if parts else spark.createDataFrame(
        [], RECORD_SCHEMA)


def _rejections(spark: SparkSession, rejected: list[TextRecord]) -> list[DataFrame]:
    """The records made on the driver (inputs refused at listing or planning), as a part."""
    return [spark.createDataFrame(rejected, RECORD_SCHEMA)] if rejected else []


def _cleaned_units(spark: SparkSession, units: list, read: Callable[[object], Iterable[Item]],
                   cfg: Config) -> DataFrame:
    """Each unit (a byte range, a row group) read and its items cleaned in one task and one
    Python pass; the records reach the JVM as Arrow."""
    blobs = spark.sparkContext.parallelize([(pickle.dumps(unit),) for unit in units],
                                           len(units))
    return spark.createDataFrame(blobs, "unit binary").mapInPandas(
        partial(unit_records, read=read, cfg=cfg.text, ratios=cfg.split.model_dump()),
        RECORD_SCHEMA)


def _check_columns(input_uri: str, columns: list[str], text_col: str, label_col: str) -> None:
    missing = [c for c in (text_col, label_col) if c not in columns]
    if missing:
        raise InputError(f"{input_uri} has no column {', '.join(missing)} "
                         f"(columns: {', '.join(columns)}); pass --text-col/--label-col")


def _read_parquet_with_spark(spark: SparkSession, input_uri: str, text_col: str,
                             label_col: str, cfg: Config) -> DataFrame:
    """Every row of a Parquet input on a filesystem pyarrow cannot open, through Spark's
    reader, named by its file and 1-based row index, cleaned (values keep their Python types,
    so this one path goes through an RDD)."""
    frame = spark.read.parquet(input_uri)
    _check_columns(input_uri, frame.columns, text_col, label_col)
    rows = frame.select(F.col("_metadata.file_path").alias("source"),
                        (F.col("_metadata.row_index") + 1).cast("int").alias("line"),
                        F.col(text_col).alias("text"), F.col(label_col).alias("label"))
    clean = partial(clean_items, cfg=cfg.text, ratios=cfg.split.model_dump())
    cores = spark.sparkContext.defaultParallelism
    if rows.rdd.getNumPartitions() < cores:  # a file or two: spread the rows over the cores
        rows = rows.repartition(TASKS_PER_CORE * cores)
    return spark.createDataFrame(
        rows.rdd.mapPartitions(lambda part: clean(RawDocument(*row) for row in part)),
        RECORD_SCHEMA)


def _parquet_footers(root: str, files: list[tuple[str, int]]
                     ) -> tuple[list[RowGroup], list[str], list[TextRecord]]:
    """(row groups, column names of all files, records of the files not read: hidden ones
    such as ``_SUCCESS`` and ``.crc``, which Spark's reader skips, links out of the root,
    empty files, files that are not Parquet, Parquet files without a row)."""
    groups: list[RowGroup] = []
    columns: dict[str, None] = {}
    rejected = []
    for path, size in files:
        found = classify_data_file(path, size, root, listing.escapes_root(path, root))
        if found.reason is not None:
            rejected.append(TextRecord.rejected(spark_file_path(path), None, found.reason,
                                                found.detail))
            continue
        try:
            footer = read_footer(path)
        except Exception as exc:  # not Parquet, or gone: that file's outcome
            rejected.append(TextRecord.rejected(
                spark_file_path(path), None, Reason.UNREADABLE,
                f"no readable Parquet footer: {type(exc).__name__}: {first_line(exc)}"))
            continue
        if not any(group.rows for group in footer.groups):
            rejected.append(TextRecord.rejected(spark_file_path(path), None, Reason.NO_ROWS,
                                                "a Parquet file without a row"))
        groups += footer.groups
        columns.update(dict.fromkeys(footer.columns))
    return groups, list(columns), rejected


def _read_parquet(spark: SparkSession, input_uri: str, root: str, files: list[tuple[str, int]],
                  text_col: str, label_col: str, cfg: Config) -> DataFrame:
    """Every row of a Parquet input, one task per row group (or slice, ``row_slices``), named
    by its file and 1-based row index (as Spark's ``_metadata`` names them), cleaned."""
    if not listing.through_storage(input_uri):
        return _read_parquet_with_spark(spark, input_uri, text_col, label_col, cfg)
    groups, columns, rejected = _parquet_footers(root, files)
    parts = _rejections(spark, rejected)
    if groups:
        _check_columns(input_uri, columns, text_col, label_col)
        log.info("reading %d Parquet row groups of %s", len(groups), input_uri)
        read = partial(read_row_group, text_col=text_col, label_col=label_col)
        cores = spark.sparkContext.defaultParallelism
        parts.append(_cleaned_units(spark, row_slices(groups, cores), read, cfg))
    return _records(spark, parts)


def _classify(files: list[tuple[str, int]], root: str, fmt: str, max_bytes: int
              ) -> tuple[list[TextRecord], dict[str, str | None], dict[str, int]]:
    """(rejected at discovery, candidate path -> label, candidate path -> size)."""
    rejected, labels, sizes = [], {}, {}
    for path, size in files:
        classify = classify_folder_file if fmt == "folders" else classify_data_file
        found = classify(path, size, root, listing.escapes_root(path, root), max_bytes)
        if found.reason is not None:
            rejected.append(TextRecord.rejected(path, None, found.reason, found.detail,
                                                found.label))
        else:
            labels[path], sizes[path] = found.label, size
    return rejected, labels, sizes


def _ranges(spark: SparkSession, sizes: dict[str, int], fmt: RowFormat, text_col: str,
            label_col: str, cfg: Config) -> tuple[list[DataFrame], dict[str, int]]:
    """(the cleaned records of the JSONL or CSV files over ``range_bytes``, read in ranges,
    one task each; the sizes of the files left to read whole)."""
    split = range_bytes(sum(sizes.values()), spark.sparkContext.defaultParallelism, SPLIT_BYTES)
    big = {path: size for path, size in sizes.items()
           if size > split and listing.through_storage(path)}
    if not big:
        return [], sizes
    sc = spark.sparkContext
    pieces = [(path, size, start, end, fmt) for path, size in sorted(big.items())
              for start, end in nominal_ranges(size, split)]
    with SparkProgress(spark, f"{fmt} ranges"):  # the first pass: cuts, line counts
        scans = sc.parallelize(pieces, len(pieces)).map(
            lambda piece: scan_file_range(*piece)).collect()
    plan = plan_ranges(scans, (text_col, label_col))
    log.info("%d %s files over %d bytes: %d ranges, %d read whole", len(big), fmt.upper(),
             split, len(plan.ranges), len(plan.whole))
    parts = _rejections(spark, plan.records)
    if plan.ranges:
        read = partial(read_range, text_col=text_col, label_col=label_col)
        parts.append(_cleaned_units(spark, plan.ranges, read, cfg))
    rest = {path: size for path, size in sizes.items() if path not in big or path in plan.whole}
    return parts, rest


def _folder_document(path: str, content: bytes | None, error: str | None,
                     labels: Broadcast) -> list[Item]:
    """A label folder's file as read -> a document to clean, or ``unreadable`` when the read
    failed."""
    label = labels.value[path]
    if content is None:
        return [TextRecord.rejected(path, None, Reason.UNREADABLE, error, label)]
    return [RawDocument(path, None, bytes(content), label)]


def _file_rows(path: str, content: bytes | None, error: str | None, fmt: RowFormat,
               text_col: str, label_col: str, cfg: TextConfig) -> Iterator[Item]:
    """A CSV or JSONL file as read -> its rows; a file that could not be read -> one
    ``unreadable`` record."""
    if content is None:
        return iter([TextRecord.rejected(path, None, Reason.UNREADABLE, error)])
    return file_rows(path, bytes(content), fmt, text_col, label_col, cfg)


def _read_documents(spark: SparkSession, input_uri: str, fmt: TextFormat, text_col: str,
                    label_col: str, cfg: Config) -> _Documents:
    """Label folders of documents, CSV or JSONL files of rows, or Parquet, read and cleaned:
    every input listed is one record."""
    root, files = listing.list_tree(spark, input_uri, allow_file=True)
    if fmt == "auto":
        fmt, why = choose_format(root, files)
        log.info("format auto: chose %s (%s)", fmt, why)
    if fmt == "parquet":
        return _cached(spark, fmt, [_read_parquet(spark, input_uri, root, files, text_col,
                                                  label_col, cfg)])
    rejected, labels, sizes = _classify(files, root, fmt, cfg.ingest.max_file_bytes)
    parts = _rejections(spark, rejected)
    if fmt in ("jsonl", "csv"):
        ranged, sizes = _ranges(spark, sizes, fmt, text_col, label_col, cfg)
        parts += ranged
    if not sizes:
        return _cached(spark, fmt, parts)
    if fmt == "folders":
        wanted = spark.sparkContext.broadcast({path: labels[path] for path in sizes})
        to_items = partial(_folder_document, labels=wanted)
    else:
        to_items = partial(_file_rows, fmt=fmt, text_col=text_col, label_col=label_col,
                           cfg=cfg.text)
    clean = partial(file_records, to_items=to_items, cfg=cfg.text,
                    ratios=cfg.split.model_dump())
    with read_files(spark, sizes, input_uri) as scan:  # Spark's own reader plans in the block
        return _cached(spark, fmt, [*parts, scan.map_batches(clean, RECORD_SCHEMA)])


def _cached(spark: SparkSession, fmt: str, parts: list[DataFrame]) -> _Documents:
    """The records of ``parts`` persisted, and counted (the job's first action)."""
    records = _records(spark, parts).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        with SparkProgress(spark, "clean"):
            discovered, blank_lines = _counts(records)
    except BaseException:
        records.unpersist()
        raise
    return _Documents(fmt, records, discovered, blank_lines)


def _counts(records: DataFrame) -> tuple[int, int]:
    """(inputs, blank JSONL lines) among ``records``: the tallies of blank lines are no
    input. One Spark job."""
    found = records.agg(F.count(F.when(F.col("blank_lines") == 0, 1)),
                        F.sum("blank_lines")).first()
    return found[0], int(found[1] or 0)


def _with_identity(records: DataFrame) -> DataFrame:
    """``path``: the input's identity, the file (and line) it came from."""
    return records.withColumn("path", F.when(F.col("line").isNull(), F.col("source"))
                              .otherwise(F.concat_ws(":", "source", F.col("line").cast("string"))))


def _vocabulary(records: DataFrame, cfg: TextConfig, fixed: list[str] | None
                ) -> tuple[list[str], float, list[tuple[str, int]]]:
    """(vocabulary, share of train tokens it covers, the most frequent train tokens), counted
    with Spark on the train split; ``fixed``: keep this vocabulary (a retrain: token ids keep
    their meaning)."""
    pattern = cfg.token_pattern
    counts = (records.filter(F.col("reason").isNull() & (F.col("split") == "train"))
              .select("text").mapInPandas(partial(count_tokens, pattern=pattern),
                                          "token string, count long")
              .groupBy("token").agg(F.sum("count").alias("count")).persist())
    try:
        total = counts.agg(F.sum("count")).first()[0] or 0
        frequent = {row.token: row["count"] for row in
                    counts.filter(F.col("count") >= cfg.min_count).collect()}
    finally:
        counts.unpersist()
    vocab = fixed if fixed is not None else build_vocab(frequent, cfg.vocab_size, cfg.min_count)
    covered = sum(frequent.get(token, 0) for token in vocab)
    top = sorted(frequent.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_TOKENS]
    return vocab, (covered / total if total else 0.0), top


def _add_token_ids(records: DataFrame, vocab_text_: str, text: TextConfig) -> DataFrame:
    """``records`` with ``token_ids`` (stored encoding) and ``length`` for accepted rows, and
    their share of out-of-vocabulary tokens in their profile (one Python pass, no join)."""
    schema = T.StructType([*records.schema.fields, T.StructField("token_ids", T.BinaryType()),
                           T.StructField("length", T.IntegerType())])
    return records.mapInPandas(partial(with_token_ids, vocabulary=vocab_text_,
                                       max_len=text.max_len, pattern=text.token_pattern),
                               schema)


def _deduplicate(spark: SparkSession, records: DataFrame, text: TextConfig) -> DataFrame:
    """Exact duplicates by content hash, then (``text.near_duplicates``) near ones by MinHash
    band keys and their exact Jaccard similarity."""
    deduped = apply_exact_duplicates(spark, records)
    if text.near_duplicates:
        with SparkProgress(spark, "near-duplicates"):
            deduped = apply_near_duplicates(spark, deduped, text)
    return deduped.persist(StorageLevel.MEMORY_AND_DISK)


def _tokens_per_document(records: DataFrame) -> dict[str, Any]:
    """min, mean, median, p95 and max tokens per accepted document (for the manifest)."""
    lengths = (records.filter(F.col("reason").isNull())
               .agg(F.min("n_tokens"), F.avg("n_tokens"),
                    F.percentile_approx("n_tokens", [0.5, 0.95]), F.max("n_tokens"))
               .first())
    quantiles = lengths[2] or [None, None]
    return {"min": lengths[0], "mean": round(lengths[1] or 0, 3), "median": quantiles[0],
            "p95": quantiles[1], "max": lengths[3]}


def _encoded(spark: SparkSession, deduped: DataFrame, vocabulary: str, text: TextConfig
             ) -> tuple[DataFrame, dict[str, int]]:
    """(records with token ids and label index, persisted; the label map)."""
    indexed, label_map = with_label_index(deduped)
    final = (_add_token_ids(indexed, vocabulary, text)
             .persist(StorageLevel.MEMORY_AND_DISK))  # the writer reads it several times
    return final, label_map


def _version_spec(cfg: Config, source: str, chosen: str, columns: dict[str, str],
                  label_map: dict[str, int], vocab: list[str], coverage: float,
                  tokens: dict[str, Any], attachments: dict[str, str]) -> VersionSpec:
    """What the writer records besides the rows: configuration, vocabulary, statistics."""
    text = cfg.text
    return VersionSpec(
        kind="text", source=source, schema=text_schema(text.max_len),
        config={"text": text.model_dump(), "split": cfg.split.model_dump(),
                "dataset": cfg.dataset.model_dump(), "format": chosen, "columns": columns},
        label_map=label_map, layout=cfg.dataset, order_column="content_hash",
        files={"vocab.txt": vocab_text(vocab)}, attachments=attachments,
        extra={"format": chosen, "vocab_size": len(vocab), "vocab_file": "vocab.txt",
               "train_token_coverage": round(coverage, 6), "max_len": text.max_len,
               "token_pattern": text.token_pattern, "tokens_per_document": tokens},
    )


def ingest_text(spark: SparkSession, cfg: Config, input_path: str, output_path: str,
                mode: WriteMode = "error", fmt: TextFormat = "auto", text_col: str = "text",
                label_col: str = "label", vocabulary: str | None = None,
                attachments: dict[str, str] | None = None,
                increment: frozenset[str] = frozenset()) -> Manifest:
    """Raw text (label folders of .txt, CSV, JSONL or Parquet) -> a committed dataset version
    with token ids, a vocabulary, and every document or row accepted or quarantined.

    ``vocabulary``: a ``vocab.txt`` to keep instead of building one; ``attachments``: extra
    files (name -> text) committed with the version; ``increment``: the new and changed input
    files (relative paths) whose statistics are kept apart too."""
    input_uri, output_uri = storage.to_uri(input_path), storage.to_uri(output_path)
    check_output(output_uri, mode)
    documents = _read_documents(spark, input_uri, fmt, text_col, label_col, cfg)
    discovered, blank_lines = documents.discovered, documents.blank_lines
    try:
        records = _with_identity(documents.records.filter(F.col("blank_lines") == 0))
        if discovered == 0:
            raise InputError(f"no documents found in {input_uri}")
        log.info("%d documents or rows read from %s (%s)", discovered, input_uri, documents.fmt)
        deduped = _deduplicate(spark, records, cfg.text)
        vocab, coverage, top = _vocabulary(
            deduped, cfg.text, None if vocabulary is None else list(parse_vocab(vocabulary)))
        final, label_map = _encoded(spark, deduped, vocab_text(vocab), cfg.text)
        version = _version_spec(cfg, input_uri, documents.fmt,
                                {"text": text_col, "label": label_col}, label_map, vocab,
                                coverage, _tokens_per_document(deduped), attachments or {})
        version = replace(version, top_tokens=tuple(top), increment=increment,
                          extra={**version.extra, "blank_lines": blank_lines}
                          if documents.fmt == "jsonl" else version.extra)
        with SparkProgress(spark, "write"):
            manifest = write_version(spark, final, discovered, output_uri, mode, version)
        final.unpersist()
        deduped.unpersist()
    finally:
        documents.records.unpersist()
    return manifest
