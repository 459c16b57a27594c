"""``pipeline predict``: Spark applies a logged model to raw images or text files and writes
Parquet predictions. Inputs are prepared by ingest's own functions with the configuration the
model's dataset version was built with (from the training run's manifest); an input ingest would
quarantine gets a row with the reason. Every file found has exactly one output row."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import types as T

from pipeline.config import Config, ImagesConfig, TextConfig
from pipeline.datasets import storage
from pipeline.datasets.writer import WriteMode, check_output
from pipeline.errors import PipelineError
from pipeline.inference.records import Prediction, image_input, predict_inputs, text_input
from pipeline.ingest import listing
from pipeline.ingest.discover import is_hidden
from pipeline.spark import SparkProgress, packed_file_partitions
from pipeline.tracking import registry
from pipeline.tracking.registry import quiet_predict
from pipeline.tracking.runs import training_inputs
from pipeline.tracking.store import absolute_tracking_uri

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
FILES_PER_PARTITION = 2000


class AccountingError(PipelineError, RuntimeError):
    """The output does not hold exactly one row per input found."""


@dataclass(frozen=True)
class PredictionSummary:
    output_uri: str
    inputs: int
    predicted: int
    quarantined: dict[str, int]


@dataclass(frozen=True)
class _Model:
    """What every partition needs to prepare inputs and predict (small, picklable)."""

    folder: str  # the model's name in SparkFiles
    kind: str
    preprocessing: dict
    vocab: str | None
    labels: list[str]

    def prepare(self):
        if self.kind == "images":
            return partial(image_input, cfg=ImagesConfig(**self.preprocessing))
        from pipeline.ingest.tokens import Tokenizer

        text = TextConfig(**self.preprocessing)
        tokenizer = Tokenizer.from_vocab_text(self.vocab, text.token_pattern, text.max_len)
        return partial(text_input, cfg=text, tokenizer=tokenizer)


def _classify(path: str, size: int, root: str) -> tuple[str | None, str | None, str | None]:
    """(true label or None, rejection reason, detail) for a file found under ``root``."""
    if is_hidden(path, root):
        return None, "hidden_file", "names starting with '.' or '_' are hidden; not read"
    if listing.escapes_root(path, root):
        return None, "symlink_outside_root", "a symbolic link that resolves outside the root"
    parts = path[len(root.rstrip("/")) + 1:].split("/")
    label = parts[0] if len(parts) > 1 else None
    if size == 0:
        return label, "empty_file", "the file has no bytes"
    return label, None, None


def _predict_partition(batches, wanted, model: _Model):
    """Arrow batches of (path, content) -> prediction rows; the model loads once per task."""
    import mlflow
    import pandas as pd
    from pyspark import SparkFiles

    predict = quiet_predict(mlflow.pyfunc.load_model(SparkFiles.get(model.folder)))
    prepare = model.prepare()

    for batch in batches:
        items = [(path, wanted.value[path], bytes(content))
                 for path, content in zip(batch["path"], batch["content"], strict=True)
                 if path in wanted.value]
        yield pd.DataFrame.from_records(predict_inputs(items, prepare, predict, model.labels),
                                        columns=list(Prediction._fields))


def predict_files(spark: SparkSession, cfg: Config, model_uri: str, input_path: str,
                  output_path: str, mode: WriteMode = "error") -> PredictionSummary:
    """Predict every file under ``input_path`` (label folders optional) into Parquet."""
    output_uri = storage.to_uri(output_path)
    check_output(output_uri, mode)
    tracking_uri = absolute_tracking_uri(cfg.mlflow.tracking_uri)
    with tempfile.TemporaryDirectory(prefix="pipeline-model-") as scratch:
        return _predict_with(spark, tracking_uri, model_uri, input_path, output_uri, mode,
                             scratch)


def _predict_with(spark: SparkSession, tracking_uri: str, model_uri: str, input_path: str,
                  output_uri: str, mode: WriteMode, scratch: str) -> PredictionSummary:
    folder, run_id = registry.fetch_model(tracking_uri, model_uri, scratch)
    manifest, vocab = training_inputs(tracking_uri, run_id)
    model = _Model(Path(folder).name, manifest.kind, manifest.config[manifest.kind], vocab,
                   manifest.labels)
    model.prepare()  # a bad preprocessing setting fails here, named, not in every task
    registry.load_predictor(tracking_uri, model_uri)  # likewise an unloadable model

    input_uri = storage.to_uri(input_path)
    root, files = listing.list_tree(spark, input_uri, allow_file=True)
    rejected, wanted, sizes = [], {}, []
    for path, size in files:
        label, reason, detail = _classify(path, size, root)
        if reason is None:
            wanted[path] = label
            sizes.append(size)
        else:
            rejected.append(Prediction(path, label, None, None, None, reason, detail))
    log.info("predicting %d %s inputs with %s (%d set aside)", len(wanted), manifest.kind,
             model_uri, len(rejected))
    rows = spark.createDataFrame(rejected, PREDICTION_SCHEMA)
    partitions = max(spark.sparkContext.defaultParallelism * 2,
                     -(-len(wanted) // FILES_PER_PARTITION))
    # the file scan is planned when the write runs: pack the small files inside the block
    with packed_file_partitions(spark, sizes, partitions), SparkProgress(spark, "predict"):
        if wanted:
            spark.sparkContext.addFile(folder, recursive=True)
            labels = spark.sparkContext.broadcast(wanted)
            content = (spark.read.format("binaryFile").option("recursiveFileLookup", "true")
                       .load(input_uri).select("path", "content"))
            rows = rows.unionByName(content.mapInPandas(
                partial(_predict_partition, wanted=labels, model=model), PREDICTION_SCHEMA))
        rows.write.mode("overwrite" if mode == "overwrite" else "error").parquet(output_uri)
        if wanted:
            labels.unpersist()
    written = spark.read.parquet(output_uri)
    returned = {r.source for r in written.select("source").collect()}
    lost = [Prediction(path, label, None, None, None, "unreadable",
                       "found but not returned by Spark's binaryFile reader")
            for path, label in wanted.items() if path not in returned]
    if lost:
        spark.createDataFrame(lost, PREDICTION_SCHEMA).write.mode("append").parquet(output_uri)
        written = spark.read.parquet(output_uri)
    counts = {r["reason"]: r["count"] for r in written.groupBy("reason").count().collect()}
    total = sum(counts.values())
    if total != len(files):
        raise AccountingError(f"{output_uri} holds {total} rows for {len(files)} inputs found "
                              f"in {root}")
    predicted_rows = counts.pop(None, 0)
    return PredictionSummary(output_uri, len(files), predicted_rows, dict(sorted(counts.items())))
