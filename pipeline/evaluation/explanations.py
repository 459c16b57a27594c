"""Why the model predicted what it did, on chosen rows of a split: Grad-CAM (Selvaraju et al.,
2017) and integrated gradients (Sundararajan et al., 2017) over image pixels, occlusion of each
token for text. Maps are per row, scaled to [0, 1] (token attributions keep their sign)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipeline.ingest.tokens import PAD

IG_STEPS = 32  # straight-line steps from the black image to the input


def chosen_rows(probs: np.ndarray, labels: np.ndarray, per_class: int) -> list[int]:
    """Per true class, the ``per_class`` most confident correct rows, then per predicted class
    the ``per_class`` most confident errors: what the model is surest of, right and wrong."""
    predicted, confidence = probs.argmax(axis=1), probs.max(axis=1)
    chosen: list[int] = []
    for cls in range(probs.shape[1]):
        for hits in ((labels == cls) & (predicted == cls), (predicted == cls) & (labels != cls)):
            rows = np.flatnonzero(hits)
            chosen += rows[np.argsort(-confidence[rows], kind="stable")][:per_class].tolist()
    return chosen


def _convolutions(model) -> list:
    import tensorflow as tf

    return [layer for layer in model.layers if isinstance(layer, tf.keras.layers.Conv2D)]


def has_convolution(model) -> bool:
    """Grad-CAM needs a ``Conv2D`` layer; integrated gradients works on any model."""
    return bool(_convolutions(model))


def _scaled(maps: np.ndarray) -> np.ndarray:
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, *([1] * (maps.ndim - 1)))
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)


def grad_cam(model, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(N, H, W): the last convolution's maps weighted by the class score's mean gradient,
    rectified and resized to the input."""
    import tensorflow as tf

    probe = tf.keras.Model(model.inputs, [_convolutions(model)[-1].output, model.output])
    with tf.GradientTape() as tape:
        maps, probs = probe(tf.convert_to_tensor(images, tf.float32), training=False)
        score = tf.gather(probs, classes, axis=1, batch_dims=1)
    weights = tf.reduce_mean(tape.gradient(score, maps), axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1))[..., None]
    resized = tf.image.resize(cam, images.shape[1:3], method="bilinear")[..., 0]
    return _scaled(resized.numpy())


def integrated_gradients(model, images: np.ndarray, classes: np.ndarray,
                         steps: int = IG_STEPS) -> np.ndarray:
    """(N, H, W): |input x mean gradient along the path from black|, summed over channels."""
    import tensorflow as tf

    x = tf.convert_to_tensor(images, tf.float32)
    total = tf.zeros_like(x)
    for alpha in (np.arange(steps) + 0.5) / steps:  # midpoint rule
        point = x * float(alpha)
        with tf.GradientTape() as tape:
            tape.watch(point)
            score = tf.gather(model(point, training=False), classes, axis=1, batch_dims=1)
        total += tape.gradient(score, point)
    attribution = tf.reduce_sum(tf.abs(x * total / steps), axis=-1)
    return _scaled(attribution.numpy())


def token_occlusion(predict: Callable[[np.ndarray], np.ndarray], ids: np.ndarray,
                    classes: np.ndarray) -> list[np.ndarray]:
    """Per row, each token's attribution: how much the class's probability drops when the
    token is removed (the rest close up); negative when the class gains."""
    attributions = []
    for row, cls in zip(ids, classes, strict=True):
        tokens = row[row != PAD]
        variants = np.full((len(tokens) + 1, len(row)), PAD, dtype=row.dtype)
        variants[0, :len(tokens)] = tokens
        for i in range(len(tokens)):
            variants[i + 1, :len(tokens) - 1] = np.delete(tokens, i)
        probs = np.asarray(predict(variants))[:, cls]
        attributions.append(probs[0] - probs[1:])
    return attributions
