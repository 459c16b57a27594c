"""The raw-input model in MLflow: logged beside the Keras model of every training, registered,
served by ``mlflow models serve`` and applied by ``spark_udf``.

It is a pyfunc ``PythonModel`` holding the Keras model and the dataset's preprocessing
(manifest, vocabulary) as artifacts, and the ``pipeline`` package as code, so it runs wherever
its pip requirements are installed. What it does per input is
``pipeline.inference.raw_model.RawInputPredictor``, given to it as ``build`` (this adapter does
not import the stage).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import mlflow.pyfunc
import pandas as pd

import pipeline
from pipeline import storage
from pipeline.datasets.manifest import MANIFEST_NAME, VOCAB_NAME, Manifest
from pipeline.errors import PipelineError
from pipeline.tracking import keys
from pipeline.tracking.requirements import pip_requirements
from pipeline.tracking.tracker import Tracker
from pipeline.tracking.ui import mlflow_executable

# what the packaged ``pipeline`` code imports on the per-record path, besides pip_requirements()
CODE_REQUIREMENTS = ("opencv-python-headless", "pillow", "pandas", "pyarrow", "pydantic",
                     "PyYAML")
Build = Callable[[str, Callable], Callable[[pd.DataFrame], pd.DataFrame]]


class RawInputModel(mlflow.pyfunc.PythonModel):
    """Raw images or texts in a DataFrame -> label, confidence, probabilities, error."""

    def __init__(self, build: Build) -> None:
        self._build = build  # (dataset folder, tensor predict) -> the per-table predictor
        self._predictor = None

    def load_context(self, context) -> None:
        from pipeline.tracking.models import load_local_predictor

        self._predictor = self._build(context.artifacts[keys.RAW_MODEL_DATASET],
                                      load_local_predictor(
                                          context.artifacts[keys.RAW_MODEL_KERAS]))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None
                ) -> pd.DataFrame:
        return self._predictor(model_input)


def _signature(kind: str, column: str):
    """Raw bytes (images) or a string (text) in ``column``; the four output columns out."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Schema

    inputs = Schema([ColSpec("binary" if kind == "images" else "string", column)])
    outputs = Schema([ColSpec("string", "label", required=False),
                      ColSpec("double", "confidence", required=False),
                      ColSpec(Array("double"), "probabilities", required=False),
                      ColSpec("string", "error", required=False)])
    return ModelSignature(inputs, outputs)


def _artifacts(model, manifest: Manifest, vocab: str | None) -> dict[str, str]:
    """The Keras model and the preprocessing, saved into a scratch folder."""
    import mlflow.tensorflow

    folder = Path(storage.scratch_dir("pipeline-raw-model-"))
    keras_dir, dataset = folder / keys.RAW_MODEL_KERAS, folder / keys.RAW_MODEL_DATASET
    with redirect_stdout(io.StringIO()):
        mlflow.tensorflow.save_model(model, str(keras_dir), pip_requirements=pip_requirements(),
                                     keras_model_kwargs={"include_optimizer": False})
    dataset.mkdir()
    (dataset / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
    if vocab is not None:
        (dataset / VOCAB_NAME).write_text(vocab, encoding="utf-8")
    return {keys.RAW_MODEL_KERAS: str(keras_dir), keys.RAW_MODEL_DATASET: str(dataset)}


def log_raw_model(tracker: Tracker, run_id: str, model, manifest: Manifest, vocab: str | None,
                  build: Build, example: pd.DataFrame) -> None:
    """Log the raw-input model of a trained Keras ``model`` into the run (``raw_model``)."""
    with tracker.active(), mlflow.start_run(run_id=run_id), redirect_stdout(io.StringIO()):
        mlflow.pyfunc.log_model(name=keys.RAW_MODEL_ARTIFACT, python_model=RawInputModel(build),
                                artifacts=_artifacts(model, manifest, vocab),
                                code_paths=[str(Path(pipeline.__file__).parent)],
                                signature=_signature(manifest.kind, str(example.columns[0])),
                                input_example=example,
                                pip_requirements=pip_requirements(*CODE_REQUIREMENTS))


def serve_command(model_uri: str, port: int) -> list[str]:
    """``mlflow models serve`` of ``model_uri`` on 127.0.0.1 in this environment."""
    return [mlflow_executable(), "models", "serve", "--model-uri", model_uri,
            "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]


def serve_environment(tracker: Tracker) -> dict[str, str]:
    """The server's environment: this venv's ``bin`` first on ``PATH`` (MLflow starts
    ``uvicorn`` from there) and the tracking store that resolves ``models:/`` URIs."""
    venv_bin = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", "")]),
            "MLFLOW_TRACKING_URI": tracker.uri, "MLFLOW_REGISTRY_URI": tracker.uri}


class ServingError(PipelineError, RuntimeError):
    """The model server did not start or did not answer."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# requests to the local server never go through an HTTP_PROXY of the environment
LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _wait_until_ready(url: str, process: subprocess.Popen, timeout_s: float, output) -> None:
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with LOOPBACK.open(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    output.seek(0)
    tail = output.read().decode(errors="replace").strip().splitlines()[-5:]
    raise ServingError(f"the model server did not answer at {url} within {timeout_s:.0f} s: "
                       + " | ".join(tail))


@contextmanager
def served(tracker: Tracker, model_uri: str, timeout_s: float = 180) -> Iterator[str]:
    """``mlflow models serve`` of ``model_uri`` in a fresh process on a free loopback port,
    for the block; yields its base URL."""
    port = _free_port()
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(serve_command(model_uri, port),
                                   env=serve_environment(tracker), stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_until_ready(f"http://127.0.0.1:{port}/ping", process, timeout_s, output)
            yield f"http://127.0.0.1:{port}"
        finally:
            _stop_group(process)


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the server's whole group, then SIGKILL to what is left of it (uvicorn
    workers can outlive their parent)."""
    with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def load_raw_predictor(tracker: Tracker, model_uri: str) -> Callable[[pd.DataFrame],
                                                                      pd.DataFrame]:
    """The raw-input model's ``predict`` in this process (a table in, labels out)."""
    with tracker.active():
        model = mlflow.pyfunc.load_model(model_uri,
                                         dst_path=storage.scratch_dir("pipeline-model-"))
    return model.predict
