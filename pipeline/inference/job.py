"""``pipeline predict``: Spark applies a logged model to raw images or text files, or to every
row of a dataset version, and writes Parquet predictions. Raw inputs are prepared by ingest's own
functions with the configuration the model's dataset version was built with (from the training
run's manifest); an input ingest would quarantine gets a row with the reason. Every input has
exactly one output row (checked)."""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import types as T

from pipeline import storage
from pipeline.config import Config, ImagesConfig, TextConfig
from pipeline.datasets.commit import WriteMode, check_output
from pipeline.datasets.features import Feature, feature_of
from pipeline.datasets.manifest import LATEST_NAME, MANIFEST_NAME, open_version
from pipeline.datasets.reasons import Reason
from pipeline.datasets.writer import AccountingError
from pipeline.inference.records import (
    Prediction,
    image_input,
    predict_inputs,
    text_input,
)
from pipeline.ingest.discover import is_hidden
from pipeline.spark import SparkProgress, listing, read_files
from pipeline.tracking.models import (
    check_fits,
    fetch_model,
    load_local_predictor,
    load_predictor,
    training_inputs,
)
from pipeline.tracking.tracker import Tracker

log = logging.getLogger(__name__)

PREDICTION_SCHEMA = T.StructType([
    T.StructField("source", T.StringType(), False),
    T.StructField("true_label", T.StringType(), True),
    T.StructField("predicted_label", T.StringType(), True),
    T.StructField("score", T.DoubleType(), True),
    T.StructField("probabilities", T.ArrayType(T.DoubleType()), True),
    T.StructField("reason", T.StringType(), True),
    T.StructField("detail", T.StringType(), True),
])
assert tuple(PREDICTION_SCHEMA.names) == Prediction._fields
NOT_RETURNED = "found but not returned by Spark's binaryFile reader"


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
        if self.kind == "images":
            return partial(image_input, cfg=ImagesConfig(**self.preprocessing))
        from pipeline.ingest.tokens import Tokenizer

        text = TextConfig(**self.preprocessing)
        tokenizer = Tokenizer.from_vocab_text(self.vocab, text.token_pattern, text.max_len)
        return partial(text_input, cfg=text, tokenizer=tokenizer)

    def prepare_stored(self):
        """For a dataset version's rows: its stored bytes, decoded as training decodes them."""
        return self.feature.decode


def _classify(path: str, size: int, root: str
              ) -> tuple[str | None, Reason | None, str | None]:
    """(true label or None, rejection reason, detail) for a file found under ``root``."""
    if is_hidden(path, root):
        return None, Reason.HIDDEN_FILE, "names starting with '.' or '_' are hidden; not read"
    if listing.escapes_root(path, root):
        return (None, Reason.SYMLINK_OUTSIDE_ROOT,
                "a symbolic link that resolves outside the root")
    parts = path[len(root.rstrip("/")) + 1:].split("/")
    label = parts[0] if len(parts) > 1 else None
    if size == 0:
        return label, Reason.EMPTY_FILE, "the file has no bytes"
    return label, None, None


def _predict_partition(batches, model: _Model, wanted=None, field: str | None = None):
    """Arrow batches -> prediction rows; the model loads once per task. Raw files: batches of
    (path, content) of wanted files only, ``wanted`` maps path -> label folder. A dataset
    version: batches of
    (source, label_name, ``field``) as stored."""
    import pandas as pd
    from pyspark import SparkFiles

    predict = load_local_predictor(SparkFiles.get(model.archive))
    prepare = model.prepare() if field is None else model.prepare_stored()
    for batch in batches:
        if field is None:
            items = [(path, wanted.value[path], bytes(content))
                     for path, content in zip(batch["path"], batch["content"], strict=True)]
        else:
            items = [(source, label, bytes(stored)) for source, label, stored in
                     zip(batch["source"], batch["label_name"], batch[field], strict=True)]
        yield pd.DataFrame.from_records(predict_inputs(items, prepare, predict, model.labels),
                                        columns=list(Prediction._fields))


def predict_files(spark: SparkSession, cfg: Config, model_uri: str, input_path: str,
                  output_path: str, mode: WriteMode = "error") -> PredictionSummary:
    """Predict every file under ``input_path`` (label folders optional) into Parquet."""
    output_uri = storage.to_uri(output_path)
    check_output(output_uri, mode)
    tracker = Tracker.from_config(cfg.mlflow)
    # not removed afterwards: Spark checks files added with addArchive again whenever a task
    # of this session starts, and fails every later job if the source is gone
    scratch = tempfile.mkdtemp(prefix="pipeline-model-")
    return _predict_with(spark, tracker, model_uri, input_path, output_uri, mode, scratch)


def _predict_with(spark: SparkSession, tracker: Tracker, model_uri: str, input_path: str,
                  output_uri: str, mode: WriteMode, scratch: str) -> PredictionSummary:
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
    return _predict_files(spark, model_uri, model, input_uri, output_uri, mode)


def _write(rows, output_uri: str, mode: WriteMode) -> None:
    rows.write.mode("overwrite" if mode == "overwrite" else "error").parquet(output_uri)


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
    with SparkProgress(spark, "predict"):
        _write(rows, output_uri, mode)
    expected = sum(version.splits[name].rows for name in splits)
    return _summary(spark, output_uri, expected, version_uri)


def _predict_files(spark: SparkSession, model_uri: str, model: _Model, input_uri: str,
                   output_uri: str, mode: WriteMode) -> PredictionSummary:
    """Every file under ``input_uri``, prepared from its raw bytes as ingest prepares them."""
    root, files = listing.list_tree(spark, input_uri, allow_file=True)
    rejected, wanted, sizes = [], {}, {}
    for path, size in files:
        label, reason, detail = _classify(path, size, root)
        if reason is None:
            wanted[path], sizes[path] = label, size
        else:
            rejected.append(Prediction.rejected(path, label, reason, detail))
    log.info("predicting %d %s inputs with %s (%d set aside)", len(wanted), model.kind,
             model_uri, len(rejected))
    rows = spark.createDataFrame(rejected, PREDICTION_SCHEMA)
    # the file scan is planned when the write runs: inside the block, which packs the files
    with read_files(spark, sizes, input_uri) as scan, SparkProgress(spark, "predict"):
        if wanted:
            labels = spark.sparkContext.broadcast(wanted)
            rows = rows.unionByName(scan.rows.mapInPandas(
                partial(_predict_partition, wanted=labels, model=model), PREDICTION_SCHEMA))
        _write(rows, output_uri, mode)
        if wanted:
            labels.unpersist()
    lost = [Prediction.rejected(path, wanted[path], Reason.UNREADABLE, NOT_RETURNED)
            for path in scan.not_returned(spark.read.parquet(output_uri), "source")]
    if lost:  # files Spark did not return: a row each, with the reason
        spark.createDataFrame(lost, PREDICTION_SCHEMA).write.mode("append").parquet(output_uri)
    return _summary(spark, output_uri, len(files), root)


def _summary(spark: SparkSession, output_uri: str, expected: int, source: str
             ) -> PredictionSummary:
    """Counts per reason of the written rows, checked: exactly one row per input."""
    written = spark.read.parquet(output_uri)
    counts = {r["reason"]: r["count"] for r in written.groupBy("reason").count().collect()}
    total = sum(counts.values())
    if total != expected:
        raise AccountingError(f"{output_uri} holds {total} rows for {expected} inputs in "
                              f"{source}")
    predicted_rows = counts.pop(None, 0)
    return PredictionSummary(output_uri, expected, predicted_rows, dict(sorted(counts.items())))
