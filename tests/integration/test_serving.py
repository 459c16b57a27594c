"""The raw-input model: the registered version takes raw image files and raw texts, prepares
them as ingest prepared the training data, and answers with class names. Reached as users
reach it: in-process through pyfunc, over HTTP from ``pipeline serve`` and ``mlflow models
serve`` (MLflow's scoring protocol, base64 file bytes), and through ``spark_udf``."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.datasets.features import feature_of
from tests.cluster import free_port
from tests.conftest import stored_rows
from tests.procs import PIPELINE, run_pipeline, wait_until_answers

OUTPUT = ["label", "confidence", "probabilities", "error"]
BROKEN_IMAGES = [b"", b"not an image at all"]  # an empty upload, a text file sent as image
RESULT_TYPE = "label string, confidence double, probabilities array<double>, error string"
NO_VENV_PATH = "/usr/local/bin:/usr/bin:/bin"  # a shell without the venv activated


def _files(raw: Path, per_label: int) -> list[Path]:
    return [f for folder in sorted(p for p in raw.iterdir() if p.is_dir())
            for f in sorted(folder.iterdir())[:per_label]]


def _source(path: Path) -> str:
    """A raw file's ``source`` in the dataset version."""
    return path.as_uri().replace("file:///", "file:/")


def _load(cfg, model_uri: str):
    import mlflow

    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    return mlflow.pyfunc.load_model(model_uri)


def _invoke(port: int, column: str, values: list) -> pd.DataFrame:
    """POST /invocations in MLflow's scoring protocol; the answer as a DataFrame."""
    body = json.dumps({"dataframe_split": {"columns": [column],
                                           "data": [[v] for v in values]}}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        return pd.DataFrame(json.loads(answer.read())["predictions"])


class _Server:
    """A serving command in its own process group, answering on ``port`` (or failing)."""

    def __init__(self, command: list[str], port: int, cwd: Path, env: dict[str, str]):
        self.log = cwd / f"serve-{port}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        wait_until_answers(f"http://127.0.0.1:{port}/ping", self.process, " ".join(command[:3]),
                           lambda: self.log.read_text(errors="replace"), timeout_s=180)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=60)


def test_the_registered_version_takes_raw_files_prepared_as_ingest_did(digits_model,
                                                                       digits_dataset,
                                                                       digits_raw):
    cfg, result = digits_model
    url, manifest = digits_dataset
    files = _files(digits_raw, 4)
    model = _load(cfg, result.model_version.uri)
    assert model.metadata.get_input_schema().input_names() == ["image"]
    out = model.predict(pd.DataFrame({"image": [f.read_bytes() for f in files] + BROKEN_IMAGES}))
    assert list(out.columns) == OUTPUT and len(out) == len(files) + len(BROKEN_IMAGES)
    assert list(out["error"].iloc[-2:]) == ["empty_file", "not_an_image"]
    assert out["label"].iloc[-2:].isna().all()  # and the batch around them was answered

    stored = stored_rows(url, "image")
    accepted = [i for i, f in enumerate(files) if _source(f) in stored]
    assert len(accepted) >= 30
    keras = _load(cfg, f"runs:/{result.run_id}/model")  # the tensor model, on ingest's pixels
    expected = np.asarray(keras.predict(feature_of(manifest).model_input(
        np.stack([stored[_source(files[i])] for i in accepted]))))
    np.testing.assert_allclose(np.stack(out["probabilities"].iloc[accepted]), expected,
                               atol=1e-6)
    assert list(out["label"].iloc[accepted]) == [manifest.labels[k]
                                                 for k in expected.argmax(axis=1)]
    assert np.allclose(out["confidence"].iloc[accepted], expected.max(axis=1))
    truth = [files[i].parent.name for i in accepted]
    assert (out["label"].iloc[accepted] == truth).mean() > 0.7


def test_pipeline_serve_answers_base64_images_without_an_activated_venv(digits_model, digits_raw,
                                                                      tmp_path):
    cfg, result = digits_model
    files = _files(digits_raw, 1)
    contents = [f.read_bytes() for f in files] + BROKEN_IMAGES
    expected = _load(cfg, result.model_version.uri).predict(pd.DataFrame({"image": contents}))
    port = free_port()
    uri = f"models:/{result.model_version.name}@challenger"
    server = _Server([PIPELINE, "serve", "--model", uri, "--port", str(port),
                      f"mlflow.tracking_uri={cfg.mlflow.tracking_uri}"], port, tmp_path,
                     {**os.environ, "PATH": NO_VENV_PATH})
    try:
        got = _invoke(port, "image", [base64.b64encode(c).decode() for c in contents])
    finally:
        server.stop()
    assert list(got["label"]) == list(expected["label"])
    assert list(got["error"].iloc[-2:]) == ["empty_file", "not_an_image"]
    np.testing.assert_allclose(np.stack(got["probabilities"].iloc[:-2]),
                               np.stack(expected["probabilities"].iloc[:-2]), atol=1e-6)


def test_mlflow_models_serve_answers_raw_text(reviews_model, reviews_raw, tmp_path):
    cfg, result = reviews_model
    texts = [f.read_text(encoding="utf-8") for f in _files(reviews_raw, 3)] + ["", " <p> </p>"]
    expected = _load(cfg, result.model_version.uri).predict(pd.DataFrame({"text": texts}))
    assert list(expected["error"].iloc[-2:]) == ["empty_text", "empty_text"]
    assert expected["label"].iloc[:-2].notna().all()
    port = free_port()
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    server = _Server([mlflow, "models", "serve", "-m", result.model_version.uri,
                      "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)], port,
                     tmp_path, {**os.environ, "MLFLOW_TRACKING_URI": cfg.mlflow.tracking_uri,
                                "PATH": f"{Path(sys.executable).parent}:{NO_VENV_PATH}"})
    try:
        got = _invoke(port, "text", texts)
    finally:
        server.stop()
    assert list(got["label"]) == list(expected["label"])
    assert list(got["error"]) == list(expected["error"])


def test_spark_udf_applies_the_model_to_raw_bytes(spark, digits_model, digits_raw):
    """MLflow 3's spark_udf casts a struct's string fields with numpy, so a null ``label`` or
    ``error`` arrives as the string 'None'; the README's expression turns it back into null."""
    import mlflow
    from pyspark.sql import functions as F

    cfg, result = digits_model
    files = _files(digits_raw, 2)
    contents = [f.read_bytes() for f in files] + BROKEN_IMAGES
    expected = _load(cfg, result.model_version.uri).predict(pd.DataFrame({"image": contents}))
    udf = mlflow.pyfunc.spark_udf(spark, result.model_version.uri, env_manager="local",
                                  result_type=RESULT_TYPE)
    frame = spark.createDataFrame(list(enumerate(contents)), "i int, image binary")
    scored = frame.withColumn("out", udf("image")).select(
        "i", *(F.when(F.col(f"out.{c}") != "None", F.col(f"out.{c}")).alias(c)
               for c in ("label", "error")), "out.confidence")
    got = scored.toPandas().sort_values("i").reset_index(drop=True)
    assert got["label"].tolist() == expected["label"].tolist()
    assert got["error"].tolist() == expected["error"].tolist()
    assert got["label"].iloc[-2:].isna().all() and got["error"].iloc[:-2].isna().all()
    np.testing.assert_allclose(got["confidence"].iloc[:-2], expected["confidence"].iloc[:-2],
                               atol=1e-6)


def test_export_writes_a_savedmodel_that_tensorflow_serves(digits_model, digits_dataset,
                                                            tmp_path):
    import tensorflow as tf

    from pipeline.datasets.reader import read_batches

    cfg, result = digits_model
    url, manifest = digits_dataset
    out = tmp_path / "savedmodel"
    done = run_pipeline(["export", "--model", result.model_version.uri, "--output", str(out),
                         "--json", f"mlflow.tracking_uri={cfg.mlflow.tracking_uri}"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["inputs"] == {"inputs": [None, *feature_of(manifest).shape]}
    again = run_pipeline(["export", "--model", result.model_version.uri, "--output", str(out),
                          f"mlflow.tracking_uri={cfg.mlflow.tracking_uri}"], tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr

    serving = tf.saved_model.load(str(out)).signatures["serving_default"]
    batch = next(read_batches(url, "test", ("image",), 64))
    inputs = feature_of(manifest).model_input(batch["image"])
    got = serving(inputs=tf.constant(inputs))["probabilities"].numpy()
    keras = _load(cfg, f"runs:/{result.run_id}/model")
    np.testing.assert_allclose(got, np.asarray(keras.predict(inputs)), atol=1e-5)


@pytest.mark.parametrize("kind", ["digits", "reviews"])
def test_export_writes_onnx_that_onnx_runtime_runs_alike(kind, request, tmp_path):
    """The image CNN and the text CNN (embeddings, 1-D convolutions) through tf2onnx, run by
    ONNX Runtime on stored test rows: the Keras model's probabilities."""
    import onnxruntime

    from pipeline.datasets.reader import read_batches

    cfg, result = request.getfixturevalue(f"{kind}_model")
    url, manifest = request.getfixturevalue(f"{kind}_dataset")
    out = tmp_path / "onnx"
    done = run_pipeline(["export", "--model", result.model_version.uri, "--format", "onnx",
                         "--output", str(out), "--json",
                         f"mlflow.tracking_uri={cfg.mlflow.tracking_uri}"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    feature = feature_of(manifest)
    assert json.loads(done.stdout)["outputs"] == {"probabilities": [None,
                                                                    manifest.num_classes]}

    session = onnxruntime.InferenceSession(str(out / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["inputs"]
    batch = next(read_batches(url, "test", (feature.field,), 64))
    inputs = feature.model_input(batch[feature.field])
    (got,) = session.run(["probabilities"], {"inputs": inputs})
    keras = _load(cfg, f"runs:/{result.run_id}/model")
    np.testing.assert_allclose(got, np.asarray(keras.predict(inputs)), atol=1e-5)
