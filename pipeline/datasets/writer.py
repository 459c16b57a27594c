"""Write a dataset version aside, check that every input is accounted for, commit atomically.

Shared by every ingest job: one writer, one manifest, one quarantine, one invariant.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from petastorm.etl.dataset_metadata import materialize_dataset
from petastorm.unischema import Unischema
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline import storage
from pipeline.config import DatasetConfig
from pipeline.datasets import statistics
from pipeline.datasets.commit import WriteMode, begin
from pipeline.datasets.features import SPLITS
from pipeline.datasets.manifest import Manifest, SplitInfo
from pipeline.datasets.parquet import parquet_files, row_groups, write_frame
from pipeline.datasets.reader import filesystem_factory
from pipeline.datasets.schema import describe
from pipeline.datasets.statistics import Statistics
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

QUARANTINE_DIR = "quarantine"
# a records column naming the previous version's Parquet file an accepted row is stored in,
# when that file is carried over whole (copied); null for rows to write
CARRIED = "stored_in"


class AccountingError(PipelineError, RuntimeError):
    """Inputs went missing or were counted twice: an output (a dataset version, nothing of it
    committed; or predictions) does not hold exactly one row per input found."""


@dataclass(frozen=True)
class VersionSpec:
    """What the writer needs to know besides the data."""

    kind: str
    source: str
    schema: Unischema
    config: dict[str, Any]
    label_map: dict[str, int]
    layout: DatasetConfig
    order_column: str
    extra: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # e.g. vocab.txt: part of the version
    # stored with the version but not fingerprinted, e.g. the raw-input snapshot (file times)
    attachments: dict[str, str] = field(default_factory=dict)
    top_tokens: tuple[tuple[str, int], ...] = ()  # text: the train split's most frequent
    # a retrain's new and changed inputs (paths relative to the input root): their statistics
    # are kept apart too, as a bad batch is diluted in a cumulative version
    increment: frozenset[str] = frozenset()


def _statistics(accepted: DataFrame, spec: VersionSpec, reasons: dict[str, int]) -> Statistics:
    """The version's statistics (and its increment's): each partition's record profiles added
    up in plain Python (``statistics.accumulate``), the partitions merged by Spark."""
    kind, increment, root = spec.kind, spec.increment, spec.source

    def both(rows):
        rows = list(rows)
        new = [r for r in rows if statistics.in_increment(r[2], root, increment)]
        yield statistics.accumulate(rows, kind), statistics.accumulate(new, kind)

    whole, new = (accepted.select("split", "label_name", "source", "profile").rdd
                  .mapPartitions(both)
                  .fold((statistics.empty(), statistics.empty()),
                        lambda a, b: (statistics.merge(a[0], b[0]), statistics.merge(a[1], b[1]))))
    return statistics.build(whole, kind, reasons, spec.top_tokens,
                            increment=new if increment else None)


def _fingerprint(records: DataFrame, spec: VersionSpec) -> str:
    """SHA-256 over the configuration, the version's files and the sorted
    (split, label, content) triples."""
    digest = hashlib.sha256(repr(sorted(spec.config.items())).encode())
    for name, text in sorted(spec.files.items()):
        digest.update(f"{name}\n{text}\n".encode())
    ordered = records.select("split", "label_name", spec.order_column).orderBy(
        "split", spec.order_column, "label_name")
    for row in ordered.toLocalIterator():
        digest.update(f"{row[0]}\t{row[1]}\t{row[2]}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class SplitLayout:
    """How one split is cut: rows per row group (at most) and Parquet files."""

    group_rows: int
    files: int


def plan_layout(rows: int, layout: DatasetConfig) -> SplitLayout:
    """Row groups of at most ``rows_per_row_group`` rows but at least ``min_row_groups`` of
    them (so a small split still feeds that many workers), ``row_groups_per_file`` per file
    (so a large split is not millions of tiny objects)."""
    group_rows = max(1, min(layout.rows_per_row_group, rows // layout.min_row_groups))
    groups = math.ceil(rows / group_rows)
    return SplitLayout(group_rows=group_rows,
                       files=max(1, math.ceil(groups / layout.row_groups_per_file)))


def _carried_files(rows: DataFrame) -> dict[str, int]:
    """Previous version's files (-> their rows) that ``rows`` carry over whole: copied, not
    written again."""
    if CARRIED not in rows.columns:
        return {}
    counted = rows.filter(F.col(CARRIED).isNotNull()).groupBy(CARRIED).count().collect()
    return {row[CARRIED]: row["count"] for row in counted}


def _write_split(spark: SparkSession, rows: DataFrame, count: int, uri: str,
                 spec: VersionSpec) -> None:
    """The split's rows under ``uri``: sorted by ``order_column`` into planned files, beside the
    previous version's files carried over whole."""
    carried = _carried_files(rows)
    fresh, layout = count - sum(carried.values()), spec.layout
    if carried:  # their row groups count toward the split's minimum
        rows = rows.filter(F.col(CARRIED).isNull())
        left = max(1, layout.min_row_groups - len(row_groups(list(carried))))
        layout = layout.model_copy(update={"min_row_groups": left})
    plan = plan_layout(fresh, layout)
    fields = list(spec.schema.fields)
    laid_out = (rows.select(*fields)
                .repartitionByRange(plan.files, spec.order_column)
                .sortWithinPartitions(spec.order_column))
    with materialize_dataset(spark, uri, spec.schema, spec.layout.row_group_size_mb,
                             filesystem_factory=filesystem_factory(uri)):
        if not storage.is_object_store(uri):
            storage.make_dirs(uri)
        for file_uri in sorted(carried):
            storage.copy_file(file_uri, storage.join(uri, file_uri.rsplit("/", 1)[-1]))
        if fresh:
            write_frame(laid_out, uri, plan.group_rows,
                        row_group_bytes=spec.layout.row_group_size_mb * 2**20)


def write_version(spark: SparkSession, records: DataFrame, discovered: int,
                  output_uri: str, mode: WriteMode, spec: VersionSpec) -> Manifest:
    """Write ``records`` (schema fields + ``split``, ``reason``, ``detail``; optionally
    ``CARRIED``) as a dataset version.

    Accepted rows have a split and no reason; rejected rows a reason. The version appears at
    ``output_uri`` only once complete and accounted for. The returned manifest's
    ``extra["version_uri"]`` says where (not in manifest.json: a version may be moved).
    """
    pending = begin(output_uri, mode)
    staging = pending.data_uri
    accepted = records.filter(F.col("reason").isNull())
    rejected = records.filter(F.col("reason").isNotNull())

    counts: dict[str, dict[str, int]] = {}
    for row in accepted.groupBy("split", "label_name").count().collect():
        counts.setdefault(row["split"], {})[row["label_name"]] = row["count"]
    reasons = {row["reason"]: row["count"] for row in rejected.groupBy("reason").count().collect()}

    try:
        stats = _statistics(accepted, spec, reasons)
        splits: dict[str, SplitInfo] = {}
        for split in SPLITS:
            per_label = dict(sorted(counts.get(split, {}).items()))
            rows = sum(per_label.values())
            if rows == 0:
                continue
            split_uri = storage.join(staging, split)
            log.info("writing %s: %d rows", split, rows)
            _write_split(spark, accepted.filter(F.col("split") == split), rows, split_uri, spec)
            groups = len(row_groups(parquet_files(split_uri)))
            splits[split] = SplitInfo(rows=rows, row_groups=groups, per_label=per_label)
        write_frame(rejected.select("path", "reason", "detail").coalesce(1),
                    storage.join(staging, QUARANTINE_DIR), spec.layout.rows_per_row_group,
                    always_write=True)

        manifest = Manifest(
            kind=spec.kind, source=spec.source,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            config=spec.config, label_map=spec.label_map, discovered=discovered,
            splits=splits, quarantine=dict(sorted(reasons.items())),
            schema=describe(spec.schema), fingerprint=_fingerprint(accepted, spec),
            extra={**spec.extra, "rows_per_row_group": spec.layout.rows_per_row_group,
                   "max_workers": min((s.row_groups for s in splits.values()), default=0),
                   "statistics": stats.summary()},
        )
        _check_accounting(records, discovered, manifest)
        files = {**spec.files, **spec.attachments, statistics.STATISTICS_NAME: stats.to_json()}
        for name, text in files.items():
            storage.write_text(storage.join(staging, name), text)
        version_uri = pending.finish(manifest.to_json())
    except BaseException:
        pending.abort()
        raise
    # not in manifest.json: a version may be moved
    return replace(manifest, extra={**manifest.extra, "version_uri": version_uri})


def _check_accounting(records: DataFrame, discovered: int, manifest: Manifest) -> None:
    """Every discovered input exactly once: in one split, or in quarantine."""
    accepted = sum(s.rows for s in manifest.splits.values())
    if not manifest.accounted():
        raise AccountingError(
            f"{discovered} inputs discovered but {accepted} accepted + {manifest.quarantined} "
            "quarantined; nothing committed")
    distinct = records.select("path").distinct().count()
    if distinct != discovered:
        raise AccountingError(
            f"{discovered} inputs discovered but {distinct} distinct paths in the output; "
            "nothing committed")
