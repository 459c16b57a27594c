"""Reading raw files with Spark: every wanted file as one ``(path, content, error)`` row, in
partitions planned on the driver.

Files on a filesystem the storage layer opens (local, ``hdfs://``, ``s3://``, ``s3a://``) are
read by the tasks themselves through ``pipeline.storage``, so object stores need no Hadoop
connector jars: the driver lists them (``listing``), plans balanced partitions of
``(path, size)`` rows, and each task reads its files. A file whose read fails comes back with
null ``content`` and the error's first line in ``error``: every wanted file has exactly one row,
and the caller turns a failed read into an ``unreadable`` record. Nothing is lost.

Other filesystems (``gs://``, ``abfs://``, ...) are read with Spark's ``binaryFile`` source,
which skips some files without a word (hidden names, files gone, dangling links); the files it
did not return get a row with the error too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from pipeline import storage
from pipeline.errors import first_line
from pipeline.spark import listing

if TYPE_CHECKING:  # pyspark is imported where it runs: ``pipeline.spark`` imports without it
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

FILES_PER_PARTITION = 2000
BYTES_PER_PARTITION = 16 << 20
# what opening a file costs, in bytes read: a partition of many small files is balanced by
# count, one of large files by bytes (an object-store request takes about as long as 1 MiB)
OPEN_COST_BYTES = 1 << 20
# a task hands back what it read in chunks of about this size, never one huge Arrow batch
FLUSH_BYTES = 32 << 20
FILE_ROWS_SCHEMA = "path string, content binary, error string"
NOT_RETURNED = "listed but not returned by Spark's binaryFile reader"


@contextmanager
def packed_file_partitions(spark: SparkSession, sizes: list[int], partitions: int,
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


def partitions_for(parallelism: int, sizes: Sequence[int]) -> int:
    """Tasks for a file scan: two per core at least, else ~2000 files or ~16 MB per task."""
    return max(parallelism * 2,
               -(-len(sizes) // FILES_PER_PARTITION),
               -(-sum(max(size, 0) for size in sizes) // BYTES_PER_PARTITION))


def file_partitions(spark: SparkSession, sizes: Sequence[int]) -> int:
    """``partitions_for`` this session's parallelism."""
    return partitions_for(spark.sparkContext.defaultParallelism, sizes)


def plan_partitions(wanted: Mapping[str, int], partitions: int,
                    open_cost: int = OPEN_COST_BYTES) -> list[list[tuple[str, int]]]:
    """``wanted`` (path -> listed size) cut into at most ``partitions`` non-empty runs of
    consecutive paths (sorted, so the same listing gives the same tasks), each holding about
    the same cost: its bytes plus ``open_cost`` per file. An unknown size (-1) counts as 0."""
    files = sorted(wanted.items())
    costs = [max(size, 0) + open_cost for _, size in files]
    remaining, runs_left = sum(costs), max(1, min(partitions, len(files)))
    planned: list[list[tuple[str, int]]] = []
    current: list[tuple[str, int]] = []
    spent = 0
    for item, cost in zip(files, costs, strict=True):
        # close the run when this file would take it (by more than half the file) past its
        # share of what is left: a huge file then leaves the others an even split
        if current and runs_left > 1 and spent + cost / 2 > remaining / runs_left:
            planned.append(current)
            remaining, runs_left, current, spent = remaining - spent, runs_left - 1, [], 0
        current.append(item)
        spent += cost
    if current:
        planned.append(current)
    return planned


def read_one(path: str) -> tuple[bytes | None, str | None]:
    """(content, None), or (None, the error's first line) when the file cannot be read."""
    try:
        return storage.read_bytes(path), None
    except Exception as exc:  # any failure of one file is that file's outcome, not the job's
        return None, f"cannot be read: {type(exc).__name__}: {first_line(exc)}"


def read_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """``(path, size)`` batches -> ``(path, content, error)`` batches, reading each file in
    the task (mapInPandas); output chunks hold about ``FLUSH_BYTES``."""
    import pandas as pd

    columns = ["path", "content", "error"]
    for batch in batches:
        rows, held = [], 0
        for path in batch["path"]:
            content, error = read_one(path)
            rows.append((path, content, error))
            held += len(content or b"")
            if held >= FLUSH_BYTES:
                yield pd.DataFrame.from_records(rows, columns=columns)
                rows, held = [], 0
        if rows:
            yield pd.DataFrame.from_records(rows, columns=columns)


def _read_then(batches: Iterator[pd.DataFrame],
               then: Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]
               ) -> Iterator[pd.DataFrame]:
    """``then`` over the files this task reads: one Python pass, the contents never go back
    to the JVM in between."""
    return then(read_batches(batches))


@dataclass(frozen=True)
class FileScan:
    """The rows of one ``read_files`` block: exactly one per wanted file."""

    planned: DataFrame | None  # path, size: the files the tasks read through the storage layer
    returned: DataFrame | None  # path, content, error: the files Spark's own reader read
    wanted: dict[str, int]  # path -> size in bytes, as listed
    partitions: int

    @property
    def rows(self) -> DataFrame:
        """path, content (null when the read failed), error (why, else null)."""
        read = None if self.planned is None else self.planned.mapInPandas(read_batches,
                                                                          FILE_ROWS_SCHEMA)
        return _union(read, self.returned)

    def map_batches(self, then: Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]],
                    schema: str | StructType) -> DataFrame:
        """``then`` (mapInPandas) over the ``rows`` batches, in the tasks that read the files:
        the bytes cross from Python to the JVM once, as ``then``'s output."""
        read = (None if self.planned is None
                else self.planned.mapInPandas(partial(_read_then, then=then), schema))
        return _union(read, None if self.returned is None
                      else self.returned.mapInPandas(then, schema))


def _union(first: DataFrame | None, second: DataFrame | None) -> DataFrame:
    """The two parts of a scan as one frame (at least one is there)."""
    if first is None or second is None:
        return first if second is None else second
    return first.unionByName(second)


def _planned_reads(spark: SparkSession, wanted: Mapping[str, int], partitions: int
                   ) -> DataFrame:
    """``(path, size)`` rows in the planned partitions: each task reads its files with
    ``storage.read_bytes`` (``read_batches``)."""
    plan = plan_partitions(wanted, partitions)
    runs = spark.sparkContext.parallelize(plan, len(plan)).flatMap(lambda run: run)
    return spark.createDataFrame(runs, "path string, size long")


def _read_with_spark(spark: SparkSession, wanted: Mapping[str, int],
                     source: str | Sequence[str] | None) -> DataFrame:
    """Spark's ``binaryFile`` source (filesystems pyarrow cannot open); the wanted files it
    did not return get a row with ``NOT_RETURNED``. Call inside ``packed_file_partitions``."""
    from pyspark.sql import functions as F

    where = list(wanted) if source is None else source
    paths = spark.createDataFrame([(path,) for path in wanted], "path string")
    files = (spark.read.format("binaryFile").option("recursiveFileLookup", "true")
             .load(where if isinstance(where, str) else list(where))
             .join(F.broadcast(paths), "path", "left_semi"))
    # the paths alone: binaryFile lists the files without reading their content
    returned = {row[0] for row in files.select("path").collect()}
    lost = [(path, None, NOT_RETURNED) for path in wanted if path not in returned]
    rows = files.select("path", "content", F.lit(None).cast("string").alias("error"))
    return rows.unionByName(spark.createDataFrame(lost, FILE_ROWS_SCHEMA)) if lost else rows


@contextmanager
def read_files(spark: SparkSession, wanted: Mapping[str, int],
               source: str | Sequence[str] | None = None) -> Iterator[FileScan]:
    """The files of ``wanted`` (path -> listed size) as a ``FileScan``: one
    ``(path, content, error)`` row per file, in ``file_partitions`` tasks.

    ``source``: where Spark's own reader looks for files on filesystems the storage layer
    cannot open (the folder they were listed from, read recursively; default: the files
    themselves). Run the actions (or ``.rdd`` conversions) on the rows inside the block.
    """
    if not wanted:
        yield FileScan(None, spark.createDataFrame([], FILE_ROWS_SCHEMA), {}, 0)
        return
    partitions = file_partitions(spark, list(wanted.values()))
    direct = {path: size for path, size in wanted.items() if listing.through_storage(path)}
    other = {path: size for path, size in wanted.items() if path not in direct}
    packing = (packed_file_partitions(spark, list(other.values()), partitions) if other
               else nullcontext())
    with packing:
        yield FileScan(_planned_reads(spark, direct, partitions) if direct else None,
                       _read_with_spark(spark, other, source) if other else None,
                       dict(wanted), partitions)
