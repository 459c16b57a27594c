"""``pipeline predict``: Spark applies a logged model to raw images or text files, or to every
row of a dataset version, and writes Parquet predictions. Raw inputs are prepared by ingest's own
functions with the configuration the model's dataset version was built with (from the training
run's manifest); an input ingest would quarantine gets a row with the reason. Every input has
exactly one output row (checked)."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections import Counter
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipeline import storage
from pipeline.config import Config
from pipeline.datasets import statistics
from pipeline.datasets.commit import WriteMode, begin_table, check_output
from pipeline.datasets.features import Feature, feature_of
from pipeline.datasets.manifest import LATEST_NAME, MANIFEST_NAME, open_version
from pipeline.datasets.parquet import write_frame
from pipeline.datasets.reasons import Reason
from pipeline.datasets.statistics import PREDICTED, Statistics
from pipeline.datasets.writer import AccountingError
from pipeline.inference.records import Prediction, predict_inputs
from pipeline.ingest.discover import placement_problem, size_problem
from pipeline.ingest.model_input import preparer
from pipeline.spark import SparkProgress, listing, read_files
from pipeline.tracking.models import (
    check_fits,
    fetch_model,
    load_local_predictor,
    load_predictor,
    training_inputs,
)
from pipeline.tracking.tracker import Tracker

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

PREDICTION_SCHEMA = T.StructType([
    T.StructField("source", T.StringType(), False),
    T.StructField("true_label", T.StringType(), True),
    T.StructField("predicted_label", T.StringType(), True),
    T.StructField("score", T.DoubleType(), True),
    T.StructField("probabilities", T.ArrayType(T.DoubleType()), True),
    T.StructField("reason", T.StringType(), True),
    T.StructField("detail", T.StringType(), True),
    T.StructField("profile", T.StringType(), True),  # added up, then dropped before the write
])
assert tuple(PREDICTION_SCHEMA.names) == Prediction._fields
ROWS_PER_ROW_GROUP = 4096


@dataclass(frozen=True)
class PredictionSummary:
    output_uri: str
    inputs: int
    predicted: int
    quarantined: dict[str, int]


@dataclass(frozen=True)
class _Model:
    """What every partition needs to prepare inputs and predict (small, picklable)."""

    archive: str  # the zipped model's name in SparkFiles (unpacked there by addArchive)
    kind: str
    preprocessing: dict
    vocab: str | None
    labels: list[str]
    feature: Feature

    def prepare(self):
        return preparer(self.kind, self.preprocessing, self.vocab)

    def prepare_stored(self):
        """For a dataset version's rows: its stored bytes, decoded as training decodes them
        (no input profile: the version's statistics hold those)."""
        return partial(_stored_input, decode=self.feature.decode)


def _stored_input(stored: bytes, decode) -> tuple[np.ndarray, None]:
    return decode(stored), None


def _classify(path: str, size: int, root: str, max_bytes: int | None = None
              ) -> tuple[str | None, Reason | None, str | None]:
    """(true label or None, rejection reason, detail) for a file found under ``root``;
    ``max_bytes``: the largest listed size read (``ingest.max_file_bytes``)."""
    if (problem := placement_problem(path, root, listing.escapes_root(path, root))) is not None:
        return None, *problem
    parts = path[len(root.rstrip("/")) + 1:].split("/")
    label = parts[0] if len(parts) > 1 else None
    if (problem := size_problem(size, max_bytes)) is not None:
        return label, *problem
    return label, None, None


def _read_items(batch: pd.DataFrame, wanted: dict[str, str | None]
                ) -> tuple[list[tuple[str, str | None, bytes]], list[Prediction]]:
    """A (path, content, error) batch of raw files -> (items to predict, ``unreadable`` rows
    of the files whose read failed); ``wanted`` maps path -> label folder."""
    items, failed = [], []
    for path, content, error in zip(batch["path"], batch["content"], batch["error"],
                                    strict=True):
        if content is None:
            failed.append(Prediction.rejected(path, wanted[path], Reason.UNREADABLE, error))
        else:
            items.append((path, wanted[path], bytes(content)))
    return items, failed


def _predict_partition(batches, model: _Model, wanted=None, field: str | None = None):
    """Arrow batches -> prediction rows; the model loads once per task. Raw files: batches of
    (path, content, error) of wanted files only, ``wanted`` maps path -> label folder. A
    dataset version: batches of (source, label_name, ``field``) as stored."""
    import pandas as pd
    from pyspark import SparkFiles

    predict = load_local_predictor(SparkFiles.get(model.archive))
    prepare = model.prepare() if field is None else model.prepare_stored()
    for batch in batches:
        failed: list[Prediction] = []
        if field is None:
            items, failed = _read_items(batch, wanted.value)
        else:
            items = [(source, label, bytes(stored)) for source, label, stored in
                     zip(batch["source"], batch["label_name"], batch[field], strict=True)]
        rows = predict_inputs(items, prepare, predict, model.labels) if items else []
        yield pd.DataFrame.from_records(rows + failed, columns=list(Prediction._fields))


def predict_files(spark: SparkSession, cfg: Config, model_uri: str, input_path: str,
                  output_path: str, mode: WriteMode = "error") -> PredictionSummary:
    """Predict every file under ``input_path`` (label folders optional) into Parquet."""
    output_uri = storage.to_uri(output_path)
    check_output(output_uri, mode)
    tracker = Tracker.from_config(cfg.mlflow)
    # removed when the process ends, not before: Spark checks files added with addArchive
    # again whenever a task of this session starts, and fails every later job if one is gone
    scratch = storage.scratch_dir("pipeline-model-")
    return _predict_with(spark, tracker, model_uri, input_path, output_uri, mode, scratch,
                         cfg.ingest.max_file_bytes)


def _predict_with(spark: SparkSession, tracker: Tracker, model_uri: str, input_path: str,
                  output_uri: str, mode: WriteMode, scratch: str, max_bytes: int
                  ) -> PredictionSummary:
    folder, run_id = fetch_model(tracker, model_uri, scratch)
    manifest, vocab = training_inputs(tracker, run_id)
    # a zip, not the folder: Spark ships local folders to local-mode executors only
    archive = shutil.make_archive(str(Path(scratch) / f"model-{run_id}"), "zip", folder)
    model = _Model(Path(archive).name, manifest.kind, manifest.config[manifest.kind], vocab,
                   manifest.labels, feature_of(manifest))
    model.prepare()  # a bad preprocessing setting fails here, named, not in every task
    load_predictor(tracker, model_uri)  # likewise an unloadable model

    input_uri = storage.to_uri(input_path)
    spark.sparkContext.addArchive(archive)
    if any(storage.exists(storage.join(input_uri, name)) for name in (MANIFEST_NAME, LATEST_NAME)):
        return _predict_version(spark, tracker, model_uri, model, input_uri, output_uri,
                                mode)
    return _predict_files(spark, model_uri, model, input_uri, output_uri, mode, max_bytes)


def _batch_statistics(rows: DataFrame, kind: str) -> Statistics:
    """The batch's statistics: predicted labels, confidences and the inputs' profiles."""
    kind = statistics.predictions_kind(kind)
    acc = (rows.filter(F.col("reason").isNull())
           .select(F.lit(PREDICTED), "predicted_label", "source", "profile").rdd
           .mapPartitions(lambda part: [statistics.accumulate(part, kind)])
           .fold(statistics.empty(), statistics.merge))
    return statistics.build(acc, kind, {})


def _write(rows: DataFrame, output_uri: str, mode: WriteMode, expected: int, source: str,
           kind: str) -> PredictionSummary:
    """Write the predictions aside (or claimed, on object stores) with the batch's statistics,
    check one row per input, then commit with ``_SUCCESS``: a failed run leaves the previous
    output as it was."""
    pending = begin_table(output_uri, mode)
    rows = rows.persist(StorageLevel.MEMORY_AND_DISK)  # predicted once, read twice
    try:
        batch = _batch_statistics(rows, kind)
        write_frame(rows.drop("profile"), pending.data_uri, ROWS_PER_ROW_GROUP,
                    always_write=True)
        storage.write_text(storage.join(pending.data_uri, statistics.PREDICTION_STATISTICS),
                           batch.to_json())
        summary = _summary(pending.data_uri, output_uri, expected, source)
        pending.finish(json.dumps(dataclasses.asdict(summary), indent=2))
    except BaseException:
        pending.abort()
        raise
    finally:
        rows.unpersist()
    return summary


def _predict_version(spark: SparkSession, tracker: Tracker, model_uri: str, model: _Model,
                     input_uri: str, output_uri: str, mode: WriteMode) -> PredictionSummary:
    """Every row of every split of a dataset version, from its stored features."""
    version_uri, version = open_version(input_uri)
    check_fits(tracker, model_uri, version, version_uri)
    model = replace(model, feature=feature_of(version))  # decode the version's own rows
    field = model.feature.field
    splits = [name for name, info in version.splits.items() if info.rows]
    log.info("predicting the %d rows of %s with %s", sum(version.splits[n].rows for n in splits),
             version_uri, model_uri)
    stored = None
    for name in splits:
        frame = spark.read.parquet(storage.join(version_uri, name)).select(
            "source", "label_name", field)
        stored = frame if stored is None else stored.unionByName(frame)
    rows = spark.createDataFrame([], PREDICTION_SCHEMA)
    if stored is not None:
        rows = stored.mapInPandas(partial(_predict_partition, model=model, field=field),
                                  PREDICTION_SCHEMA)
    expected = sum(version.splits[name].rows for name in splits)
    with SparkProgress(spark, "predict"):
        return _write(rows, output_uri, mode, expected, version_uri, model.kind)


def _predict_files(spark: SparkSession, model_uri: str, model: _Model, input_uri: str,
                   output_uri: str, mode: WriteMode, max_bytes: int) -> PredictionSummary:
    """Every file under ``input_uri``, prepared from its raw bytes as ingest prepares them;
    one row per file, whether read or not."""
    root, files = listing.list_tree(spark, input_uri, allow_file=True)
    rejected, wanted, sizes = [], {}, {}
    for path, size in files:
        label, reason, detail = _classify(path, size, root, max_bytes)
        if reason is None:
            wanted[path], sizes[path] = label, size
        else:
            rejected.append(Prediction.rejected(path, label, reason, detail))
    log.info("predicting %d %s inputs with %s (%d set aside)", len(wanted), model.kind,
             model_uri, len(rejected))
    rows = spark.createDataFrame(rejected, PREDICTION_SCHEMA)
    # the write runs inside the block (Spark's own reader plans its scan there)
    with read_files(spark, sizes, input_uri) as scan, SparkProgress(spark, "predict"):
        if wanted:
            labels = spark.sparkContext.broadcast(wanted)
            rows = rows.unionByName(scan.map_batches(
                partial(_predict_partition, wanted=labels, model=model), PREDICTION_SCHEMA))
        summary = _write(rows, output_uri, mode, len(files), root, model.kind)
        if wanted:
            labels.unpersist()
    return summary


def _summary(written_uri: str, output_uri: str, expected: int, source: str
             ) -> PredictionSummary:
    """Counts per reason of the written rows, checked: exactly one row per input."""
    import pyarrow.parquet as pq

    filesystem, path = storage.resolve(written_uri)
    reasons = pq.read_table(path, filesystem=filesystem, columns=["reason"]).column("reason")
    counts = Counter(reasons.to_pylist())
    total = sum(counts.values())
    if total != expected:
        raise AccountingError(f"{output_uri} holds {total} rows for {expected} inputs in "
                              f"{source}")
    predicted_rows = counts.pop(None, 0)
    return PredictionSummary(output_uri, expected, predicted_rows, dict(sorted(counts.items())))
