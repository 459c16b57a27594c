"""The fast gradient sign method (Goodfellow et al., 2015): each pixel moved by ``epsilon`` x
255 in the direction that raises the model's loss. TensorFlow, on the Keras model."""

from __future__ import annotations

import numpy as np


def fgsm(model, inputs: np.ndarray, labels: np.ndarray, epsilon: float) -> np.ndarray:
    """Adversarial copies of ``inputs`` (float32 pixels in [0, 255]) for the true ``labels``."""
    import tensorflow as tf

    x = tf.convert_to_tensor(inputs, tf.float32)
    truth = tf.one_hot(labels, model.output_shape[-1])
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.keras.losses.categorical_crossentropy(truth, model(x, training=False))
    step = epsilon * 255.0 * tf.sign(tape.gradient(loss, x))
    return tf.clip_by_value(x + step, 0.0, 255.0).numpy()
