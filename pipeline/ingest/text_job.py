"""Spark wiring of the text ingest: read documents and rows in any of the usual shapes, map
``clean_text_document``, remove exact and near duplicates, build the vocabulary on the train
split, and write a dataset version with ``vocab.txt``. Per-record logic: ``text``, ``tokens``,
``text_records``, ``text_rows``."""

from __future__ import annotations

import logging
from collections import Counter
from functools import partial
from typing import Literal

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipeline.config import Config, TextConfig
from pipeline.datasets import storage
from pipeline.datasets.manifest import Manifest
from pipeline.datasets.schema import encode_token_ids, text_schema
from pipeline.datasets.writer import VersionSpec, WriteMode, check_output, write_version
from pipeline.errors import InputError
from pipeline.ingest import listing
from pipeline.ingest.discover import classify_data_file, classify_folder_file, is_hidden
from pipeline.ingest.labels import build_label_map
from pipeline.ingest.rejection import Rejected
from pipeline.ingest.spark_dedup import apply_exact_duplicates, apply_near_duplicates
from pipeline.ingest.text import decode_text
from pipeline.ingest.text_records import TextRecord, clean_text_document
from pipeline.ingest.text_rows import csv_rows, jsonl_rows
from pipeline.ingest.tokens import (
    Tokenizer,
    build_vocab,
    parse_vocab,
    tokenize,
    vocab_text,
    word_shingles,
)
from pipeline.spark import SparkProgress, packed_file_partitions

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
])
assert tuple(RECORD_SCHEMA.names) == TextRecord._fields
BYTES_PER_PARTITION = 16 << 20


def _partitions(spark: SparkSession, total_bytes: int, at_least: int = 1) -> int:
    """Enough tasks to keep every core busy, and about 16 MB of raw text per task."""
    return max(spark.sparkContext.defaultParallelism * 2, -(-total_bytes // BYTES_PER_PARTITION),
               min(at_least, spark.sparkContext.defaultParallelism * 8))


def _extension(path: str) -> str:
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


def _rejected(source: str, line: int | None, reason: str, detail: str,
              label: str | None = None) -> TextRecord:
    return TextRecord(source, line, label, None, None, None, None, reason, detail)


def _parse_file(row, fmt: str, text_col: str, label_col: str, cfg: TextConfig):
    """A CSV or JSONL file -> (source, line, text, label) rows or rejections."""
    try:
        content = decode_text(bytes(row.content), cfg)
    except Rejected as rejected:
        yield _rejected(row.path, None, rejected.reason, f"the whole file: {rejected.detail}")
        return
    parse = csv_rows if fmt == "csv" else jsonl_rows
    for raw in parse(content, text_col, label_col):
        if raw.reason is not None:
            yield _rejected(row.path, raw.line, raw.reason, raw.detail)
        else:
            yield (row.path, raw.line, raw.text, raw.label)


def _clean_partition(items, cfg: TextConfig, ratios: dict[str, float]):
    for item in items:
        if isinstance(item, TextRecord):
            yield item
        else:
            source, line, text, label = item
            yield clean_text_document(source, line, text, label, cfg, ratios)


def _read_documents(spark: SparkSession, input_uri: str, fmt: TextFormat, text_col: str,
                    label_col: str, cfg: TextConfig, candidates_out: dict[str, str]):
    """(format chosen, RDD of TextRecord-or-(source, line, text, label) items).

    For label folders, ``candidates_out`` receives the files that must come back from Spark's
    reader (one document each), so that a file it skips is quarantined, not lost.
    """
    sc = spark.sparkContext
    if fmt == "parquet":
        frame = spark.read.parquet(input_uri)
        missing = [c for c in (text_col, label_col) if c not in frame.columns]
        if missing:
            raise InputError(f"{input_uri} has no column {', '.join(missing)} "
                             f"(columns: {', '.join(frame.columns)}); pass --text-col/--label-col")
        rows = frame.select(F.col("_metadata.file_path").alias("source"),
                            (F.col("_metadata.row_index") + 1).cast("int").alias("line"),
                            F.col(text_col).alias("text"), F.col(label_col).alias("label"))
        return fmt, rows.rdd.map(tuple)

    root, files = listing.list_tree(spark, input_uri, allow_file=True)
    if fmt == "auto":
        fmt, why = choose_format(root, files)
        log.info("format auto: chose %s (%s)", fmt, why)
        if fmt == "parquet":
            return _read_documents(spark, input_uri, "parquet", text_col, label_col, cfg,
                                   candidates_out)
    rejected, candidates = [], {}
    for path, size in files:
        if fmt == "folders":
            found = classify_folder_file(path, size, root, listing.escapes_root(path, root))
        else:
            found = classify_data_file(path, size, root)
        if found.reason is not None:
            rejected.append(_rejected(path, None, found.reason, found.detail, found.label))
        else:
            candidates[path] = found.label
    items = sc.parallelize(rejected, 1) if rejected else sc.emptyRDD()
    if candidates:
        labels = sc.broadcast(candidates)
        sizes = [size for path, size in files if path in candidates]
        with packed_file_partitions(spark, sizes, _partitions(spark, sum(sizes))):
            content = (spark.read.format("binaryFile").option("recursiveFileLookup", "true")
                       .load(input_uri).select("path", "content").rdd  # planned here
                       .filter(lambda row: row.path in labels.value))
        if fmt == "folders":
            documents = content.map(lambda row: (row.path, None, bytes(row.content),
                                                 labels.value[row.path]))
        else:
            documents = content.flatMap(partial(_parse_file, fmt=fmt, text_col=text_col,
                                                label_col=label_col, cfg=cfg))
        items = items.union(documents)
    if fmt == "folders":
        candidates_out.update(candidates)
    return fmt, items


def _with_identity(records: DataFrame) -> DataFrame:
    """``path``: the input's identity, the file (and line) it came from."""
    return records.withColumn("path", F.when(F.col("line").isNull(), F.col("source"))
                              .otherwise(F.concat_ws(":", "source", F.col("line").cast("string"))))


def _vocabulary(records: DataFrame, cfg: TextConfig, fixed: list[str] | None
                ) -> tuple[list[str], float]:
    """(vocabulary, share of train tokens it covers), counted with Spark on the train split;
    ``fixed``: keep this vocabulary (a retrain: token ids keep their meaning)."""
    pattern = cfg.token_pattern
    counts = (records.filter(F.col("reason").isNull() & (F.col("split") == "train"))
              .select("text").rdd.flatMap(lambda row: tokenize(row.text, pattern))
              .map(lambda token: (token, 1)).reduceByKey(lambda a, b: a + b))
    total = counts.map(lambda kv: kv[1]).sum() if not counts.isEmpty() else 0
    frequent = dict(counts.filter(lambda kv: kv[1] >= cfg.min_count).collect())
    vocab = fixed if fixed is not None else build_vocab(frequent, cfg.vocab_size, cfg.min_count)
    covered = sum(frequent.get(token, 0) for token in vocab)
    return vocab, (covered / total if total else 0.0)


def _add_token_ids(spark: SparkSession, records: DataFrame, vocab_text_: str, max_len: int,
                   pattern: str) -> DataFrame:
    schema = text_schema(max_len)
    # the very tokeniser serving uses (built from vocab.txt), so ids match by construction
    tokenizer = spark.sparkContext.broadcast(
        Tokenizer.from_vocab_text(vocab_text_, pattern, max_len))

    def encode_partition(rows):
        for row in rows:
            if row.reason is None:
                ids, length = tokenizer.value(row.text)
                yield (row.path, encode_token_ids(schema, ids), length)

    encoded = spark.createDataFrame(
        records.select("path", "text", "reason").rdd.mapPartitions(encode_partition),
        "path string, token_ids binary, length int")
    return records.join(encoded, "path", "left")


def ingest_text(spark: SparkSession, cfg: Config, input_path: str, output_path: str,
                mode: WriteMode = "error", fmt: TextFormat = "auto", text_col: str = "text",
                label_col: str = "label", vocabulary: str | None = None,
                attachments: dict[str, str] | None = None) -> Manifest:
    """Raw text (label folders of .txt, CSV, JSONL or Parquet) -> a committed dataset version
    with token ids, a vocabulary, and every document or row accepted or quarantined.

    ``vocabulary``: a ``vocab.txt`` to keep instead of building one; ``attachments``: extra
    files (name -> text) committed with the version."""
    input_uri, output_uri = storage.to_uri(input_path), storage.to_uri(output_path)
    check_output(output_uri, mode)
    text, ratios = cfg.text, cfg.split.model_dump()
    expected: dict[str, str] = {}
    chosen, items = _read_documents(spark, input_uri, fmt, text_col, label_col, text, expected)
    # one CSV file is one task to parse; spread its rows before the per-row work
    cleaned = items.repartition(_partitions(spark, 0, items.getNumPartitions())).mapPartitions(
        partial(_clean_partition, cfg=text, ratios=ratios))
    base = spark.createDataFrame(cleaned, RECORD_SCHEMA).persist(StorageLevel.MEMORY_AND_DISK)
    records = base
    if expected:
        returned = {r.source for r in records.select("source").distinct().collect()}
        lost = [_rejected(path, None, "unreadable",
                          "listed but not returned by Spark's binaryFile reader", label)
                for path, label in expected.items() if path not in returned]
        if lost:
            records = records.unionByName(spark.createDataFrame(lost, RECORD_SCHEMA))
    records = _with_identity(records)
    try:
        with SparkProgress(spark, "clean"):
            discovered = records.count()
        if discovered == 0:
            raise InputError(f"no documents found in {input_uri}")
        log.info("%d documents or rows read from %s (%s)", discovered, input_uri, chosen)
        deduped = apply_exact_duplicates(spark, records)
        if text.near_duplicates:
            pattern, k = text.token_pattern, text.shingle_size
            shingle = F.udf(lambda t: word_shingles(tokenize(t, pattern), k) if t else [],
                            T.ArrayType(T.StringType()))
            with SparkProgress(spark, "near-duplicates"):
                deduped = apply_near_duplicates(spark, deduped, shingle(F.col("text")),
                                                text.near_duplicate_jaccard)
        deduped = deduped.persist(StorageLevel.MEMORY_AND_DISK)
        vocab, coverage = _vocabulary(
            deduped, text, None if vocabulary is None else list(parse_vocab(vocabulary)))
        vocabulary = vocab_text(vocab)
        labels = {r[0] for r in deduped.filter(F.col("reason").isNull())
                  .select("label_name").distinct().collect()}
        label_map = build_label_map(labels)
        label_index = F.create_map(*[F.lit(x) for kv in label_map.items() for x in kv])
        final = (_add_token_ids(spark, deduped, vocabulary, text.max_len, text.token_pattern)
                 .withColumn("label", label_index[F.col("label_name")].cast("int"))
                 .persist(StorageLevel.MEMORY_AND_DISK))  # the writer reads it several times
        lengths = (deduped.filter(F.col("reason").isNull())
                   .agg(F.min("n_tokens"), F.avg("n_tokens"),
                        F.percentile_approx("n_tokens", [0.5, 0.95]), F.max("n_tokens"))
                   .first())
        version = VersionSpec(
            kind="text", source=input_uri, schema=text_schema(text.max_len),
            config={"text": text.model_dump(), "split": ratios,
                    "dataset": cfg.dataset.model_dump(), "format": chosen,
                    "columns": {"text": text_col, "label": label_col}},
            label_map=label_map, rows_per_row_group=cfg.dataset.rows_per_row_group,
            row_group_size_mb=cfg.dataset.row_group_size_mb, order_column="content_hash",
            files={"vocab.txt": vocabulary}, attachments=attachments or {},
            extra={"format": chosen, "vocab_size": len(vocab), "vocab_file": "vocab.txt",
                   "train_token_coverage": round(coverage, 6), "max_len": text.max_len,
                   "token_pattern": text.token_pattern,
                   "tokens_per_document": {
                       "min": lengths[0], "mean": round(lengths[1] or 0, 3),
                       "median": (lengths[2] or [None])[0], "p95": (lengths[2] or [None, None])[1],
                       "max": lengths[3]}},
        )
        with SparkProgress(spark, "write"):
            manifest = write_version(spark, final, discovered, output_uri, mode, version)
        final.unpersist()
        deduped.unpersist()
    finally:
        base.unpersist()
    return manifest
