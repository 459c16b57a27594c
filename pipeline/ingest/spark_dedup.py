"""Duplicates across the whole dataset, found with Spark; decided by ``dedup``.

Records are DataFrames with ``path`` (the input's identity), ``label_name``, ``split``,
``content_hash``, ``reason`` and ``detail`` (and ``text``, for near duplicates); rows with a
reason are already rejected.
"""

from __future__ import annotations

import logging
from functools import partial

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.config import TextConfig
from pipeline.datasets.reasons import Reason
from pipeline.ingest.dedup import DuplicateGroup, connected_groups, duplicate_decisions
from pipeline.ingest.minhash import sketch_batches

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


# documents sharing one band key beyond which only pairs with the bucket's first are checked:
# such a crowd is near-identical texts (the same words, punctuation apart), which the first
# links into one group; a member like others of the crowd but not like the first can be missed
LARGEST_BUCKET = 100
SKETCH_SCHEMA = "path string, label_name string, shingles array<bigint>, bands array<bigint>"


def apply_near_duplicates(spark: SparkSession, records: DataFrame, text: TextConfig,
                          seed: int = 42) -> DataFrame:
    """Pairs of accepted inputs whose word-shingle sets have Jaccard similarity >=
    ``text.near_duplicate_jaccard``: same label keeps one (``near_duplicate``), else
    ``conflicting_labels``. Candidates share a MinHash band key (``minhash``); their exact
    Jaccard similarity is computed in Spark, so only true pairs reach the driver."""
    sketch = partial(sketch_batches, pattern=text.token_pattern, k=text.shingle_size,
                     jaccard=text.near_duplicate_jaccard, seed=seed)
    sketches = (records.filter(F.col("reason").isNull())
                .select("path", "label_name", "text").mapInPandas(sketch, SKETCH_SCHEMA)
                .filter(F.size("shingles") > 0).withColumn("id", F.monotonically_increasing_id())
                .persist(StorageLevel.MEMORY_AND_DISK))
    try:
        pairs = _similar_pairs(sketches, text.near_duplicate_jaccard).collect()
    finally:
        sketches.unpersist()
    labels = {row.a: row.la for row in pairs} | {row.b: row.lb for row in pairs}
    groups = [DuplicateGroup([(path, labels[path]) for path in members])
              for members in connected_groups([(row.a, row.b) for row in pairs])]
    decisions = duplicate_decisions(groups, reason=Reason.NEAR_DUPLICATE)
    if decisions:
        log.info("%d inputs are near-duplicates of another", len(decisions))
    return apply_decisions(spark, records, decisions)


def _similar_pairs(sketches: DataFrame, jaccard: float) -> DataFrame:
    """(a, la, b, lb): the paths and labels of the pairs sharing a band key whose shingle sets
    are at least ``jaccard`` similar, each pair once. Buckets are grouped by the
    sketches' numeric ``id``, not their paths: the one shuffle of every band key stays small."""
    buckets = (sketches.select("id", F.posexplode("bands").alias("band", "key"))
               .groupBy("band", "key").agg(F.collect_list("id").alias("ids"))
               .filter(F.size("ids") > 1))
    # a large bucket pairs its smallest id with each other member (n pairs, not n squared)
    firsts = F.when(F.size("ids") <= LARGEST_BUCKET, F.col("ids")).otherwise(
        F.array(F.array_min("ids")))
    candidates = (buckets.select(F.explode(firsts).alias("x"), "ids")
                  .select("x", F.explode("ids").alias("y")).filter(F.col("x") < F.col("y"))
                  .distinct())
    side = {name: sketches.select(F.col("id").alias(name), F.col("path").alias(f"p{name}"),
                                  F.col("label_name").alias(f"l{name}"),
                                  F.col("shingles").alias(f"s{name}")) for name in ("x", "y")}
    both = candidates.join(side["x"], "x").join(side["y"], "y")
    similarity = F.size(F.array_intersect("sx", "sy")) / F.size(F.array_union("sx", "sy"))
    return both.filter(similarity >= jaccard).select(
        F.col("px").alias("a"), F.col("lx").alias("la"), F.col("py").alias("b"),
        F.col("ly").alias("lb"))
