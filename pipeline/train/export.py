"""``pipeline export``: a logged model's Keras network as a TensorFlow SavedModel with a
``serving_default`` signature, for servers that run TensorFlow models (TF Serving, Vertex AI,
SageMaker's TensorFlow container) rather than MLflow models. It takes the model's tensors (as
the Keras model does); raw files and texts need the raw-input model (``pipeline serve``)."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipeline import storage
from pipeline.errors import InputError
from pipeline.tracking.models import load_keras_model
from pipeline.tracking.tracker import Tracker

log = logging.getLogger(__name__)
SIGNATURE = "serving_default"


@dataclass(frozen=True)
class Export:
    output_uri: str
    inputs: dict[str, list]  # signature input name -> shape (None: any batch size)
    outputs: dict[str, list]


def _shapes(specs) -> dict[str, list]:
    return {name: spec.shape.as_list() for name, spec in specs.items()}


def export_savedmodel(tracker: Tracker, model_uri: str, output: str) -> Export:
    """Write the model's SavedModel to ``output`` (a local path or URI; must not exist)."""
    import tensorflow as tf

    output_uri = storage.to_uri(output)
    storage.check_location(output_uri)
    if storage.exists(output_uri):
        raise InputError(f"{output_uri} already exists; export writes a new folder")
    model = load_keras_model(tracker, model_uri)
    serve = tf.function(lambda x: {"probabilities": model(x, training=False)},
                        input_signature=[tf.TensorSpec((None, *model.input_shape[1:]),
                                                       model.inputs[0].dtype, name="inputs")])
    with tempfile.TemporaryDirectory(prefix="pipeline-export-") as scratch:
        tf.saved_model.save(model, scratch, signatures={SIGNATURE: serve})
        storage.copy_dir(Path(scratch).as_uri(), output_uri)
    concrete = serve.get_concrete_function()
    export = Export(output_uri, {"inputs": [None, *model.input_shape[1:]]},
                    _shapes(concrete.structured_outputs))
    log.info("exported %s as a SavedModel to %s", model_uri, output_uri)
    return export
