"""A retrain's image ingest on top of the previous version: what did not change is not redone.

Inputs unchanged since the previous version keep its rows, read back without their pixels (path,
label, split, content hash, profile, and the Parquet file they are stored in), so they are not
decoded again and duplicates are still decided over every input. After that, a stored file
whose rows all stay is copied whole by the writer (``writer.CARRIED``); only the rows of files
that cannot be (an input in them changed, went away or became a duplicate; the label map
changed; the file holds less than one row group, or its split's whole files fewer than
``dataset.min_row_groups``) get their pixels read back, to be written again. The version is the
one a full rebuild gives, laid out in other files. Anything unsure is decoded again: an input
is reused only when its path, relative to the input root, is among the snapshot's unchanged.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import pyarrow as pa
from pyspark import Broadcast
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline import storage
from pipeline.config import DatasetConfig, ImagesConfig
from pipeline.datasets.manifest import Manifest, open_version
from pipeline.datasets.parquet import parquet_files, read_columns, read_frame
from pipeline.datasets.writer import CARRIED
from pipeline.ingest.discover import Discovered
from pipeline.ingest.image_records import ROW_RULES, ImageRecord

log = logging.getLogger(__name__)

# the stored columns a reused row is made of (the image only when written again), as records
# name them
STORED = {"source": "path string", "label_name": "label_name string",
          "content_hash": "content_hash string", "profile": "profile string"}


@dataclass(frozen=True)
class Reuse:
    """A retrain's previous version: its rows stand for the ``unchanged`` inputs (paths relative
    to the input root, as the input snapshot names them), which are not read again."""

    version_uri: str
    unchanged: frozenset[str]


@dataclass(frozen=True)
class StoredFile:
    """A Parquet file of the previous version: its split, row groups and rows' sources."""

    split: str
    row_groups: int
    sources: list[str]


@dataclass(frozen=True)
class Reused:
    rows: DataFrame  # ImageRecord rows without the image, and the file they are stored in
    paths: frozenset[str]  # the inputs they stand for
    files: dict[str, StoredFile]  # every Parquet file of the previous version
    label_map: dict[str, int]  # the previous version's: the copied files hold its indices


def why_not_reusable(manifest: Manifest, images: ImagesConfig, ratios: dict[str, float]
                     ) -> str | None:
    """Why a previous version's rows are not what decoding the same files would give now."""
    if manifest.kind != "images" or manifest.extra.get("row_rules") != ROW_RULES:
        return "it was built by other rules (an earlier release, or other decoders)"
    if manifest.config.get("images") != images.model_dump():
        return "its images.* settings differ"
    if manifest.config.get("split") != ratios:
        return "its split.* settings differ"
    return None


def _among(table: pa.Table, file_uri: str, wanted: Broadcast) -> pa.Table:
    """The rows of inputs in ``wanted`` (source -> label) with the same label, and the file
    they are stored in."""
    labels = [wanted.value.get(source) for source in table.column("source").to_pylist()]
    same = [label is not None and label == stored
            for label, stored in zip(labels, table.column("label_name").to_pylist(), strict=True)]
    kept = table.filter(pa.array(same, pa.bool_()))
    return kept.append_column(CARRIED, pa.array([file_uri] * kept.num_rows, pa.string()))


def _stored_rows(spark: SparkSession, files: dict[str, StoredFile],
                 keep: Callable[[pa.Table, str], pa.Table]) -> DataFrame:
    """The ``STORED`` columns of the rows ``keep`` selects, with their split (the folder of
    their file) and the file, as ImageRecord rows without the image."""
    schema = ", ".join([*STORED.values(), f"{CARRIED} string"])
    rows = read_frame(spark, list(files), list(STORED), schema, keep)
    filled = {"split": F.element_at(F.split(CARRIED, "/"), -2),
              "image": F.lit(None).cast("binary"), "reason": F.lit(None).cast("string"),
              "detail": F.lit(None).cast("string")}
    return rows.select(*[filled.get(name, F.col(name)).alias(name)
                         for name in (*ImageRecord._fields, CARRIED)])


def _plain(uri: str) -> str:
    """``uri`` with the ``file:`` spellings made one (``file:///x``, ``file:/x`` -> ``/x``)."""
    return "/" + uri[len("file:"):].lstrip("/") if uri.startswith("file:") else uri


def _unchanged(path: str, root: str, unchanged: frozenset[str]) -> bool:
    """Whether ``path``, relative to ``root`` as written (no URL parsing: a '#', '?' or '%41'
    is part of a file name, as in the snapshot), is among the ``unchanged``."""
    base, full = _plain(root).rstrip("/") + "/", _plain(path)
    return full.startswith(base) and full[len(base):] in unchanged


def reused_rows(spark: SparkSession, reuse: Reuse, found: list[Discovered], root: str,
                images: ImagesConfig, ratios: dict[str, float]) -> Reused | None:
    """The previous version's rows of the candidates in ``found`` that did not change, or None
    when they cannot stand for a fresh decode (then every input is read)."""
    version_uri, manifest = open_version(reuse.version_uri)
    why_not = why_not_reusable(manifest, images, ratios)
    if why_not is not None:
        log.info("reading every input again, not reusing %s: %s", reuse.version_uri, why_not)
        return None
    unchanged = {d.path: d.label for d in found
                 if d.reason is None and _unchanged(d.path, root, reuse.unchanged)}
    if not unchanged:
        log.info("no input is unchanged since %s: every input is read", reuse.version_uri)
        return None
    keep = partial(_among, wanted=spark.sparkContext.broadcast(unchanged))
    files, paths = {}, set()
    for split in manifest.splits:  # the sources first, one small column read here
        for file_uri in parquet_files(storage.join(version_uri, split)):
            stored, groups = read_columns(file_uri, ["source", "label_name"])
            files[file_uri] = StoredFile(split, groups, stored.column("source").to_pylist())
            paths.update(keep(stored, file_uri).column("source").to_pylist())
    log.info("reusing the rows of %d unchanged inputs from %s", len(paths), reuse.version_uri)
    return Reused(_stored_rows(spark, files, keep), frozenset(paths), files, manifest.label_map)


def files_kept_whole(reused: Reused, kept: set[str], layout: DatasetConfig,
                     label_map: dict[str, int]) -> list[str]:
    """The previous version's files that can be copied as they are: every row kept, at least
    one full row group, the same label indices, and enough row groups in their split."""
    if label_map != reused.label_map:
        return []
    whole = [file_uri for file_uri, stored in reused.files.items()
             if len(stored.sources) >= layout.rows_per_row_group
             and all(source in kept for source in stored.sources)]
    groups = Counter()
    for file_uri in whole:
        groups[reused.files[file_uri].split] += reused.files[file_uri].row_groups
    return [file_uri for file_uri in whole
            if groups[reused.files[file_uri].split] >= layout.min_row_groups]


def with_images(spark: SparkSession, records: DataFrame, reused: Reused, layout: DatasetConfig,
                label_map: dict[str, int]) -> tuple[DataFrame, list[str]]:
    """(``records`` in which the reused rows of files that cannot be copied whole have their
    image back and are written again, the files copied whole). Call after deduplication, with
    the new version's ``label_map``."""
    kept = {row.path for row in records.filter(F.col("reason").isNull()
                                               & F.col(CARRIED).isNotNull())
            .select("path").collect()}
    whole = files_kept_whole(reused, kept, layout, label_map)
    broken = sorted(set(reused.files) - set(whole))
    if broken:
        records = _written_again(spark, records, reused, broken, kept)
    log.info("%d stored files carried over whole, the rows of %d written again", len(whole),
             len(broken))
    return records, whole


def _written_again(spark: SparkSession, records: DataFrame, reused: Reused, broken: list[str],
                   kept: set[str]) -> DataFrame:
    """``records`` in which the reused rows of the ``broken`` files are no longer carried, and
    the kept ones have their pixels back (read only from files that hold one)."""
    in_broken = F.col(CARRIED).isin(broken)
    again = records.filter(in_broken).withColumn(CARRIED, F.lit(None).cast("string"))
    holding = [file_uri for file_uri in broken
               if any(source in kept for source in reused.files[file_uri].sources)]
    if holding:
        paths = spark.sparkContext.broadcast(kept)
        pixels = read_frame(spark, holding, ["source", "image"], "path string, image binary",
                            partial(_with_source_in, paths=paths))
        again = again.drop("image").join(pixels, "path", "left")
    return records.filter(F.col(CARRIED).isNull() | ~in_broken).unionByName(again)


def _with_source_in(table: pa.Table, file_uri: str, paths: Broadcast) -> pa.Table:
    """The rows of ``table`` whose source is in ``paths``."""
    kept = paths.value
    return table.filter(pa.array([s in kept for s in table.column("source").to_pylist()],
                                 pa.bool_()))
