"""``pipeline export``: a logged model's Keras network for servers that do not run MLflow
models: a TensorFlow SavedModel with a ``serving_default`` signature (TF Serving, Vertex AI,
SageMaker's TensorFlow container), or an ONNX graph (ONNX Runtime, Triton, most accelerators).
Both take the model's tensors (as the Keras model does) under the input name ``inputs`` and
answer ``probabilities``; raw files and texts need the raw-input model (``pipeline serve``)."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline import storage
from pipeline.errors import InputError
from pipeline.tracking.models import load_keras_model
from pipeline.tracking.tracker import Tracker

log = logging.getLogger(__name__)
SIGNATURE = "serving_default"
ONNX_FILE = "model.onnx"
ONNX_OPSET = 17  # ONNX Runtime 1.19 runs up to 21; 17 is what most servers accept today
ExportFormat = Literal["savedmodel", "onnx"]


@dataclass(frozen=True)
class Export:
    output_uri: str
    format: str
    inputs: dict[str, list]  # input name -> shape (None: any batch size)
    outputs: dict[str, list]


def _input_spec(tf, model):
    """The one input, any batch size, named ``inputs``."""
    return tf.TensorSpec((None, *model.input_shape[1:]), model.inputs[0].dtype, name="inputs")


def _write_savedmodel(tf, model, folder: Path) -> dict[str, list]:
    """The SavedModel into ``folder``; its signature's output shapes."""
    serve = tf.function(lambda x: {"probabilities": model(x, training=False)},
                        input_signature=[_input_spec(tf, model)])
    tf.saved_model.save(model, str(folder), signatures={SIGNATURE: serve})
    outputs = serve.get_concrete_function().structured_outputs
    return {name: spec.shape.as_list() for name, spec in outputs.items()}


def _write_onnx(tf, model, folder: Path) -> dict[str, list]:
    """``model.onnx`` (tf2onnx) into ``folder``; its output shapes."""
    import tf2onnx

    proto, _ = tf2onnx.convert.from_keras(model, input_signature=(_input_spec(tf, model),),
                                          opset=ONNX_OPSET, output_path=str(folder / ONNX_FILE))
    return {o.name: [d.dim_value or None for d in o.type.tensor_type.shape.dim]
            for o in proto.graph.output}


WRITERS: dict[str, Callable] = {"savedmodel": _write_savedmodel, "onnx": _write_onnx}


def export_model(tracker: Tracker, model_uri: str, output: str,
                 fmt: ExportFormat = "savedmodel") -> Export:
    """Write the model in ``fmt`` to ``output`` (a local path or URI; must not exist)."""
    import tensorflow as tf

    output_uri = storage.to_uri(output)
    storage.check_location(output_uri)
    if storage.exists(output_uri):
        raise InputError(f"{output_uri} already exists; export writes a new folder")
    model = load_keras_model(tracker, model_uri)
    with tempfile.TemporaryDirectory(prefix="pipeline-export-") as scratch:
        outputs = WRITERS[fmt](tf, model, Path(scratch))
        storage.copy_dir(Path(scratch).as_uri(), output_uri)
    log.info("exported %s as %s to %s", model_uri, fmt, output_uri)
    return Export(output_uri, fmt, {"inputs": [None, *model.input_shape[1:]]}, outputs)
