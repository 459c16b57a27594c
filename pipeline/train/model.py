"""Keras model builders, shaped by the dataset version's manifest and the ``train`` knobs.

Image inputs are float32 pixels in [0, 255] (rescaling and augmentation are layers of the model,
so serving feeds the decoded image as is); text inputs are int32 token ids, PAD=0. Every model
ends in a softmax layer named ``probabilities``.
"""

from __future__ import annotations

from pipeline.config import TrainConfig
from pipeline.datasets.features import feature_of
from pipeline.datasets.manifest import Manifest
from pipeline.errors import PipelineError

MODELS_BY_KIND = {"images": ("image_cnn",), "text": ("text_cnn", "text_rnn")}
MIN_IMAGE_CNN_SIDE = 10
OUTPUT_LAYER = "probabilities"  # the softmax every model ends in


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
    height, width = feature_of(manifest).shape[:2] if manifest.kind == "images" else (0, 0)
    if chosen == "image_cnn" and min(height, width) < MIN_IMAGE_CNN_SIDE:
        raise ModelChoiceError(
            f"image_cnn needs images of at least {MIN_IMAGE_CNN_SIDE}x{MIN_IMAGE_CNN_SIDE} "
            f"(two 3x3 convolutions and two 2x2 poolings); this version holds "
            f"{height}x{width}")
    return chosen


def _augmentation(layers, cfg: TrainConfig) -> list:
    """Random flips, shifts and rotations: active in training, the identity at inference."""
    augment, seed = cfg.augment, cfg.seed
    stack = []
    if augment.flip != "none":
        mode = "horizontal_and_vertical" if augment.flip == "both" else augment.flip
        stack.append(layers.RandomFlip(mode, seed=seed))
    if augment.shift > 0:
        stack.append(layers.RandomTranslation(augment.shift, augment.shift, fill_mode="constant",
                                              seed=seed))
    if augment.rotation > 0:
        stack.append(layers.RandomRotation(augment.rotation / 360.0, fill_mode="constant",
                                           seed=seed))
    return stack


def _image_cnn(layers, shape: tuple[int, ...], cfg: TrainConfig, reg) -> list:
    """The seed's CNN by default: Conv32-MaxPool-Conv64-MaxPool-Dense128."""
    stack = [layers.Input(shape=shape, name="image"), *_augmentation(layers, cfg),
             layers.Rescaling(1.0 / 255)]
    for filters in cfg.image_cnn.conv_filters:
        stack += [layers.Conv2D(filters, 3, activation=cfg.activation, kernel_regularizer=reg),
                  layers.MaxPooling2D()]
    return [*stack, layers.Flatten(),
            layers.Dense(cfg.image_cnn.dense_units, activation=cfg.activation,
                         kernel_regularizer=reg)]


def _text_cnn(layers, shape: tuple[int, ...], vocab_size: int, cfg: TrainConfig, reg) -> list:
    """Embedding + 1-D convolution + global max pooling: fast, strong on short reviews."""
    knobs = cfg.text_cnn
    return [layers.Input(shape=shape, dtype="int32", name="token_ids"),
            layers.Embedding(vocab_size, knobs.embedding_dim, embeddings_regularizer=reg),
            layers.Conv1D(knobs.filters, knobs.kernel_size, activation=cfg.activation,
                          padding="same", kernel_regularizer=reg),
            layers.GlobalMaxPooling1D(),
            layers.Dense(knobs.dense_units, activation=cfg.activation, kernel_regularizer=reg)]


def _text_rnn(layers, shape: tuple[int, ...], vocab_size: int, cfg: TrainConfig, reg) -> list:
    """Embedding (PAD masked) + a GRU or LSTM, bidirectional by default."""
    knobs = cfg.text_rnn
    cell = {"gru": layers.GRU, "lstm": layers.LSTM}[knobs.cell]
    recurrent = cell(knobs.units, kernel_regularizer=reg)
    return [layers.Input(shape=shape, dtype="int32", name="token_ids"),
            layers.Embedding(vocab_size, knobs.embedding_dim, mask_zero=True,
                             embeddings_regularizer=reg),
            layers.Bidirectional(recurrent) if knobs.bidirectional else recurrent,
            layers.Dense(knobs.dense_units, activation=cfg.activation, kernel_regularizer=reg)]


def build_model(name: str, manifest: Manifest, cfg: TrainConfig):
    """The named model; inputs, classes and vocabulary size come from the manifest."""
    import tensorflow as tf

    layers = tf.keras.layers
    reg = tf.keras.regularizers.L2(cfg.l2) if cfg.l2 > 0 else None
    shape = feature_of(manifest).shape
    if name == "image_cnn":
        body = _image_cnn(layers, shape, cfg, reg)
    else:
        builder = {"text_cnn": _text_cnn, "text_rnn": _text_rnn}[name]
        body = builder(layers, shape, manifest.extra["vocab_size"], cfg, reg)
    head = [layers.Dropout(cfg.dropout, seed=cfg.seed)] if cfg.dropout > 0 else []
    # float32 probabilities whatever train.precision computes the body in
    head.append(layers.Dense(manifest.num_classes, activation="softmax", name=OUTPUT_LAYER,
                             kernel_regularizer=reg, dtype="float32"))
    return tf.keras.Sequential(body + head, name=name)
