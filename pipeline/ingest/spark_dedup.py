"""Duplicates across the whole dataset, found with Spark; decided by ``dedup``.

Records are DataFrames with ``path`` (the input's identity), ``label_name``, ``split``,
``content_hash``, ``reason`` and ``detail``; rows with a reason are already rejected.
"""

from __future__ import annotations

import logging

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.datasets.reasons import Reason
from pipeline.ingest.dedup import DuplicateGroup, connected_groups, duplicate_decisions

log = logging.getLogger(__name__)


def apply_decisions(spark: SparkSession, records: DataFrame,
                    decisions: dict[str, tuple[Reason, str]]) -> DataFrame:
    """Reject the inputs named in ``decisions`` (a small table, broadcast to every task)."""
    if not decisions:
        return records
    # str(): a plain string for Spark's JVM unpickler, which knows no enum
    table = spark.createDataFrame([(p, str(r), d) for p, (r, d) in decisions.items()],
                                  "path string, _dup_reason string, _dup_detail string")
    joined = records.join(F.broadcast(table), "path", "left")
    rejected = F.col("_dup_reason").isNotNull()
    return (joined
            .withColumn("split", F.when(rejected, F.lit(None)).otherwise(F.col("split")))
            .withColumn("reason", F.coalesce("_dup_reason", "reason"))
            .withColumn("detail", F.coalesce("_dup_detail", "detail"))
            .select(*records.columns))


def apply_exact_duplicates(spark: SparkSession, records: DataFrame) -> DataFrame:
    """Same content hash: same label keeps one (``duplicate``), else ``conflicting_labels``."""
    groups = (records.filter(F.col("reason").isNull())
              .groupBy("content_hash")
              .agg(F.count("*").alias("n"),
                   F.collect_list(F.struct("path", "label_name")).alias("members"))
              .filter(F.col("n") > 1).collect())
    decisions = duplicate_decisions(
        [DuplicateGroup([(m.path, m.label_name) for m in g.members]) for g in groups])
    if decisions:
        log.info("%d inputs are exact duplicates of another", len(decisions))
    return apply_decisions(spark, records, decisions)


def apply_near_duplicates(spark: SparkSession, records: DataFrame, shingles: Column,
                          jaccard: float, seed: int = 42) -> DataFrame:
    """Pairs of accepted inputs whose shingle sets have Jaccard similarity >= ``jaccard``,
    found with MinHashLSH: same label keeps one (``near_duplicate``), else
    ``conflicting_labels``."""
    from pyspark.ml.feature import HashingTF, MinHashLSH

    candidates = (records.filter(F.col("reason").isNull())
                  .select("path", "label_name", shingles.alias("shingles"))
                  .filter(F.size("shingles") > 0))
    vectors = HashingTF(inputCol="shingles", outputCol="features", numFeatures=1 << 20,
                        binary=True).transform(candidates).cache()
    model = MinHashLSH(inputCol="features", outputCol="hashes", numHashTables=5,
                       seed=seed).fit(vectors)
    pairs = (model.approxSimilarityJoin(vectors, vectors, 1.0 - jaccard, distCol="distance")
             .filter(F.col("datasetA.path") < F.col("datasetB.path"))
             .select(F.col("datasetA.path").alias("a"), F.col("datasetA.label_name").alias("la"),
                     F.col("datasetB.path").alias("b"), F.col("datasetB.label_name").alias("lb"))
             .collect())
    vectors.unpersist()
    labels = {row.a: row.la for row in pairs} | {row.b: row.lb for row in pairs}
    groups = [DuplicateGroup([(path, labels[path]) for path in members])
              for members in connected_groups([(row.a, row.b) for row in pairs])]
    decisions = duplicate_decisions(groups, reason=Reason.NEAR_DUPLICATE)
    if decisions:
        log.info("%d inputs are near-duplicates of another", len(decisions))
    return apply_decisions(spark, records, decisions)
