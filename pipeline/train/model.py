"""Keras model builders. Image inputs are float32 pixels in [0, 255] (rescaling is part of the
model, so serving feeds the decoded image as is); text inputs are int32 token ids, PAD=0."""

from __future__ import annotations

from pipeline.datasets.manifest import Manifest
from pipeline.train.features import feature_shape


def build_image_cnn(height: int, width: int, channels: int, num_classes: int):
    """The seed's CNN: Conv32-MaxPool-Conv64-MaxPool-Dense128-softmax."""
    import tensorflow as tf

    layers = tf.keras.layers
    return tf.keras.Sequential([
        layers.Input(shape=(height, width, channels), name="image"),
        layers.Rescaling(1.0 / 255),
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(num_classes, activation="softmax", name="probabilities"),
    ], name="image_cnn")


def build_text_cnn(max_len: int, vocab_size: int, num_classes: int):
    """Embedding + 1-D convolution + global max pooling: fast, strong on short reviews."""
    import tensorflow as tf

    layers = tf.keras.layers
    return tf.keras.Sequential([
        layers.Input(shape=(max_len,), dtype="int32", name="token_ids"),
        layers.Embedding(vocab_size, 64),
        layers.Conv1D(128, 5, activation="relu", padding="same"),
        layers.GlobalMaxPooling1D(),
        layers.Dropout(0.3),
        layers.Dense(64, activation="relu"),
        layers.Dense(num_classes, activation="softmax", name="probabilities"),
    ], name="text_cnn")


def build_text_rnn(max_len: int, vocab_size: int, num_classes: int):
    """Embedding (PAD masked) + bidirectional GRU."""
    import tensorflow as tf

    layers = tf.keras.layers
    return tf.keras.Sequential([
        layers.Input(shape=(max_len,), dtype="int32", name="token_ids"),
        layers.Embedding(vocab_size, 64, mask_zero=True),
        layers.Bidirectional(layers.GRU(64)),
        layers.Dense(64, activation="relu"),
        layers.Dense(num_classes, activation="softmax", name="probabilities"),
    ], name="text_rnn")


def build_model(name: str, manifest: Manifest):
    """The named model, shaped by the dataset version's manifest."""
    shape = feature_shape(manifest)
    if name == "image_cnn":
        return build_image_cnn(*shape, manifest.num_classes)
    builder = {"text_cnn": build_text_cnn, "text_rnn": build_text_rnn}[name]
    return builder(shape[0], manifest.extra["vocab_size"], manifest.num_classes)


def make_optimizer(name: str, learning_rate: float):
    import tensorflow as tf

    optimizers = {
        "adam": tf.keras.optimizers.Adam,
        "sgd": tf.keras.optimizers.SGD,
        "rmsprop": tf.keras.optimizers.RMSprop,
    }
    return optimizers[name](learning_rate=learning_rate)
