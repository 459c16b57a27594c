"""Parquet files written by Spark tasks through the storage layer, not through Hadoop's
filesystems: a dataset version lands on local disk, HDFS or S3 alike, with no S3A jars."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from pipeline import storage

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession


def row_group_rows(rows: int, nbytes: int, max_rows: int, max_bytes: int | None) -> int:
    """Rows per row group for a file of ``rows`` rows and ``nbytes`` bytes: at most
    ``max_rows`` rows and about ``max_bytes`` bytes, in equal groups (no sliver at the end)."""
    if max_bytes and nbytes:
        max_rows = min(max_rows, max(1, max_bytes * rows // nbytes))
    groups = max(1, -(-rows // max_rows))
    return max(1, -(-rows // groups))


def write_frame(frame: DataFrame, uri: str, rows_per_row_group: int,
                always_write: bool = False, row_group_bytes: int | None = None) -> int:
    """Each partition of ``frame`` as one Parquet file under ``uri``, in equal row groups of
    at most ``rows_per_row_group`` rows and about ``row_group_bytes`` bytes; returns the rows
    written. ``always_write``: an empty frame still leaves one file with the schema, so
    readers can open the folder."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.sql.pandas.types import to_arrow_schema

    # every column nullable: Spark's declared nullability and its Arrow batches' can differ
    schema = pa.schema([field.with_nullable(True) for field in to_arrow_schema(frame.schema)])
    token = uuid.uuid4().hex[:8]

    def write_partition(batches):
        from pyspark import TaskContext

        batches = list(batches)
        table = (pa.Table.from_batches(batches).cast(schema) if batches
                 else schema.empty_table())
        if table.num_rows:
            name = f"part-{TaskContext.get().partitionId():05d}-{token}.parquet"
            filesystem, path = storage.resolve(storage.join(uri, name))
            size = row_group_rows(table.num_rows, table.nbytes, rows_per_row_group,
                                  row_group_bytes)
            pq.write_table(table, path, filesystem=filesystem, row_group_size=size)
        yield pa.RecordBatch.from_pydict({"rows": [table.num_rows]})

    if not storage.is_object_store(uri):  # S3 has no folders; a marker would read as a file
        storage.make_dirs(uri)
    written = sum(row.rows for row in frame.mapInArrow(write_partition, "rows long").collect())
    if always_write and written == 0:
        filesystem, path = storage.resolve(storage.join(uri, f"part-00000-{token}.parquet"))
        pq.write_table(schema.empty_table(), path, filesystem=filesystem)
    return written


def parquet_files(uri: str) -> list[str]:
    """The URIs of the Parquet files below the folder ``uri``, sorted."""
    return [file_uri for file_uri, _ in storage.list_files(uri) if file_uri.endswith(".parquet")]


def row_groups(files: list[str]) -> list[tuple[str, int]]:
    """(file URI, row group index) of every row group of ``files``."""
    import pyarrow.parquet as pq

    groups = []
    for file_uri in files:
        filesystem, path = storage.resolve(file_uri)
        with filesystem.open_input_file(path) as handle:
            count = pq.ParquetFile(handle).metadata.num_row_groups
        groups += [(file_uri, index) for index in range(count)]
    return groups


def read_columns(file_uri: str, columns: list[str]) -> tuple[pa.Table, int]:
    """(The ``columns`` of one Parquet file, its row groups), read on the driver: for small
    columns (a version's sources), where a Spark job would cost more than the read."""
    import pyarrow.parquet as pq

    filesystem, path = storage.resolve(file_uri)
    with filesystem.open_input_file(path) as handle:
        parquet = pq.ParquetFile(handle)
        return parquet.read(columns=columns), parquet.metadata.num_row_groups


def read_frame(spark: SparkSession, files: list[str], columns: list[str], schema: str,
               keep: Callable[[pa.Table, str], pa.Table]) -> DataFrame:
    """The ``columns`` of the Parquet ``files`` as a DataFrame of ``schema``, read through the
    storage layer as ``write_frame`` writes them, in two tasks per core (or one per row group,
    when fewer); ``keep(table, file URI)`` selects (and may extend) each group's rows."""
    import pyarrow.parquet as pq

    def read_groups(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for file_uri, index in zip(batch["file"].to_pylist(), batch["index"].to_pylist(),
                                       strict=True):
                filesystem, path = storage.resolve(file_uri)
                with filesystem.open_input_file(path) as handle:
                    table = pq.ParquetFile(handle).read_row_group(index, columns=columns)
                yield from keep(table, file_uri).to_batches()

    groups = row_groups(files)
    tasks = max(1, min(len(groups), 2 * spark.sparkContext.defaultParallelism))
    planned = spark.sparkContext.parallelize(groups, tasks)
    return (spark.createDataFrame(planned, "file string, index int")
            .mapInArrow(read_groups, schema))
