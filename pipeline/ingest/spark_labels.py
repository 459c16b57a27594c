"""Spark wiring of the label map: the accepted rows' label names, indexed in sorted order."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from pipeline.ingest.labels import build_label_map

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def with_label_index(records: DataFrame) -> tuple[DataFrame, dict[str, int]]:
    """(``records`` with ``label``, the index of its ``label_name``; the label map of the
    accepted rows). The map is typed: when every input is quarantined it is empty, and Spark
    cannot look a string up in an untyped empty map."""
    labels = {row[0] for row in records.filter(F.col("reason").isNull())
              .select("label_name").distinct().collect()}
    label_map = build_label_map(labels)
    index = F.create_map(*[F.lit(x) for kv in label_map.items() for x in kv])
    return (records.withColumn("label", index.cast("map<string,int>")[F.col("label_name")]),
            label_map)
