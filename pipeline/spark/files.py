"""Reading raw files with Spark: the wanted files as ``(path, content)`` rows, packed into
sensible partitions, and afterwards the wanted files Spark did not return.

Spark's ``binaryFile`` source skips some files without a word (hidden names, files gone or
unreadable by the time the scan runs, dangling links). Callers list the files themselves
(``listing``), read them here, and ask ``FileScan.not_returned`` which never came back, so that
each becomes an ``unreadable`` record: nothing is lost.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pyspark is imported where it runs: ``pipeline.spark`` imports without it
    from pyspark.sql import DataFrame, SparkSession

# binaryFile makes one partition per ~32 small files (docs/STACK.md); we pack them instead
FILES_PER_PARTITION = 2000
BYTES_PER_PARTITION = 16 << 20
FILE_ROWS_SCHEMA = "path string, content binary"


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


def file_partitions(spark: SparkSession, sizes: Sequence[int]) -> int:
    """Tasks for a file scan: two per core at least, else ~2000 files or ~16 MB per task."""
    return max(spark.sparkContext.defaultParallelism * 2,
               -(-len(sizes) // FILES_PER_PARTITION),
               -(-sum(max(size, 0) for size in sizes) // BYTES_PER_PARTITION))


@dataclass(frozen=True)
class FileScan:
    """The rows of one ``read_files`` block and the files they were meant to hold."""

    rows: DataFrame  # path, content: one row per wanted file Spark returned
    wanted: dict[str, int]  # path -> size in bytes, as listed
    partitions: int

    def not_returned(self, output: DataFrame, column: str = "path") -> list[str]:
        """The wanted files absent from ``output[column]``, in listing order.

        ``output``: what the caller made of ``rows`` (one row or more per file returned);
        call it after the action that read them, on a persisted or written result.
        """
        if not self.wanted:
            return []
        returned = {row[0] for row in output.select(column).distinct().collect()}
        return [path for path in self.wanted if path not in returned]


@contextmanager
def read_files(spark: SparkSession, wanted: Mapping[str, int],
               source: str | Sequence[str]) -> Iterator[FileScan]:
    """The files of ``wanted`` (path -> size) as a ``FileScan`` of ``(path, content)`` rows.

    ``source`` is where Spark looks: the folder they were listed from (read recursively) or
    the files themselves; other files found there are left out. The scan is packed into
    ``file_partitions`` tasks for the actions (or ``.rdd`` conversions) run inside the block.
    """
    from pyspark.sql import functions as F

    if not wanted:
        yield FileScan(spark.createDataFrame([], FILE_ROWS_SCHEMA), {}, 0)
        return
    sizes = list(wanted.values())
    partitions = file_partitions(spark, sizes)
    paths = spark.createDataFrame([(path,) for path in wanted], "path string")
    with packed_file_partitions(spark, sizes, partitions):
        files = (spark.read.format("binaryFile").option("recursiveFileLookup", "true")
                 .load(source if isinstance(source, str) else list(source))
                 .select("path", "content"))
        rows = files.join(F.broadcast(paths), "path", "left_semi")
        yield FileScan(rows, dict(wanted), partitions)
