"""Parquet files written by Spark tasks through the storage layer, not through Hadoop's
filesystems: a dataset version lands on local disk, HDFS or S3 alike, with no S3A jars."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from pipeline import storage

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


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
