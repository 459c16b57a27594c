"""What the model reads from a dataset version: the feature field and its form, by kind.

Images: the stored pixels as float32 with a channel axis (the model rescales them).
Text: the stored int32 token ids (PAD=0), of the version's ``max_len``.
"""

from __future__ import annotations

import numpy as np

from pipeline.datasets.manifest import Manifest
from pipeline.errors import PipelineError

MODELS_BY_KIND = {"images": ("image_cnn",), "text": ("text_cnn", "text_rnn")}
MIN_IMAGE_CNN_SIDE = 10


class ModelChoiceError(PipelineError, ValueError):
    """The model does not fit the dataset version's kind."""


def choose_model(requested: str, manifest: Manifest) -> str:
    """``auto`` -> the first model for the version's kind; otherwise check that it fits."""
    fitting = MODELS_BY_KIND[manifest.kind]
    chosen = fitting[0] if requested == "auto" else requested
    if chosen not in fitting:
        raise ModelChoiceError(f"train.model={requested} cannot train on a {manifest.kind} "
                               f"dataset version; use one of {', '.join(fitting)}")
    if manifest.num_classes < 2:
        raise ModelChoiceError(f"the dataset version has {manifest.num_classes} class(es); "
                               "training needs at least 2")
    if chosen == "image_cnn" and min(feature_shape(manifest)[:2]) < MIN_IMAGE_CNN_SIDE:
        raise ModelChoiceError(
            f"image_cnn needs images of at least {MIN_IMAGE_CNN_SIDE}x{MIN_IMAGE_CNN_SIDE} "
            f"(two 3x3 convolutions and two 2x2 poolings); this version holds "
            f"{feature_shape(manifest)[0]}x{feature_shape(manifest)[1]}")
    return chosen


def feature_field(manifest: Manifest) -> str:
    return "image" if manifest.kind == "images" else "token_ids"


def feature_shape(manifest: Manifest) -> tuple[int, ...]:
    """The model's input shape: (h, w, channels) for images, (max_len,) for text."""
    shape = next(f for f in manifest.schema if f["name"] == feature_field(manifest))["shape"]
    if manifest.kind == "images":
        return (shape[0], shape[1], shape[2] if len(shape) == 3 else 1)
    return tuple(shape)


def as_model_input(manifest: Manifest, values: np.ndarray) -> np.ndarray:
    """A numpy batch of the stored feature as the model takes it."""
    if manifest.kind == "images":
        return values.astype("float32").reshape((len(values), *feature_shape(manifest)))
    return values.astype("int32")


def tf_model_input(tf, manifest: Manifest, value):
    """One stored feature tensor (from Petastorm) as the model takes it."""
    dtype = tf.float32 if manifest.kind == "images" else tf.int32
    return tf.reshape(tf.cast(value, dtype), feature_shape(manifest))


def tf_decode_image(tf, manifest: Manifest, encoded):
    """Stored PNG/JPEG bytes -> the model's float32 input, decoded by TensorFlow (Petastorm's
    codec hands OpenCV BGR pixels, so the files themselves hold standard RGB)."""
    shape = feature_shape(manifest)
    if manifest.config["images"]["encoding"] == "jpeg":  # OpenCV's accurate integer IDCT
        image = tf.io.decode_jpeg(encoded, channels=shape[2], dct_method="INTEGER_ACCURATE")
    else:
        image = tf.io.decode_png(encoded, channels=shape[2])
    return tf.cast(tf.reshape(image, shape), tf.float32)
