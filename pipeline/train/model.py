"""Keras model builders. Inputs are float32 pixels in [0, 255]; rescaling is part of the model
so that serving feeds the decoded image as is."""

from __future__ import annotations


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


def make_optimizer(name: str, learning_rate: float):
    import tensorflow as tf

    optimizers = {
        "adam": tf.keras.optimizers.Adam,
        "sgd": tf.keras.optimizers.SGD,
        "rmsprop": tf.keras.optimizers.RMSprop,
    }
    return optimizers[name](learning_rate=learning_rate)
