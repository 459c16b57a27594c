"""One raw input -> the model's input, with exactly the preprocessing ingest applied; and the
model's probabilities -> a prediction row. Plain Python: no Spark, no MLflow."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import NamedTuple

import cv2
import numpy as np

from pipeline.config import ImagesConfig, TextConfig
from pipeline.evaluation.scoring import checked_predict
from pipeline.ingest.images import prepare_image
from pipeline.ingest.rejection import Rejected
from pipeline.ingest.text_records import encode_document
from pipeline.ingest.tokens import Tokenizer


class Prediction(NamedTuple):
    """One input's outcome: a prediction, or the reason ingest would have quarantined it."""

    source: str
    true_label: str | None  # the label folder it came from, if any
    predicted_label: str | None
    score: float | None  # the predicted class's probability
    probabilities: list[float] | None
    reason: str | None
    detail: str | None


def image_input(content: bytes, cfg: ImagesConfig) -> np.ndarray:
    """Raw image bytes -> float32 (h, w, c): cleaned, resized and encoded as ingest stores it,
    then decoded as training reads it; raises ``Rejected``."""
    return stored_image_input(prepare_image(content, cfg).encoded, cfg.color_mode)


def stored_image_input(stored: bytes, color_mode: str) -> np.ndarray:
    """A dataset version's stored PNG/JPEG bytes -> float32 (h, w, c) RGB or grayscale."""
    flag = cv2.IMREAD_GRAYSCALE if color_mode == "grayscale" else cv2.IMREAD_COLOR
    pixels = cv2.imdecode(np.frombuffer(stored, np.uint8), flag)
    if color_mode == "grayscale":
        return pixels[..., None].astype(np.float32)
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB).astype(np.float32)


def text_input(content: bytes, cfg: TextConfig, tokenizer: Tokenizer) -> np.ndarray:
    """Raw text bytes -> int32 token ids of the vocabulary, cleaned as ingest cleans."""
    ids, _ = encode_document(content, cfg, tokenizer)
    return np.asarray(ids, dtype=np.int32)


def stored_text_input(stored: bytes) -> np.ndarray:
    """A dataset version's stored token ids (Petastorm's NdarrayCodec: ``np.save`` bytes)."""
    return np.load(io.BytesIO(stored), allow_pickle=False).astype(np.int32)


def predict_inputs(items: Sequence[tuple[str, str | None, bytes]],
                   prepare: Callable[[bytes], np.ndarray],
                   predict: Callable[[np.ndarray], np.ndarray],
                   labels: Sequence[str]) -> list[Prediction]:
    """Prepare every item (a rejection becomes a row with its reason), predict the rest in one
    batch. ``items``: (source, true label or None, raw bytes)."""
    rows: list[Prediction | None] = []
    ready: list[tuple[int, np.ndarray]] = []
    for source, true_label, content in items:
        try:
            ready.append((len(rows), prepare(content)))
            rows.append(None)
        except Rejected as rejected:
            rows.append(Prediction(source, true_label, None, None, None, rejected.reason,
                                   rejected.detail))
        except Exception as exc:  # a decoder bug must quarantine one file, not the batch
            rows.append(Prediction(source, true_label, None, None, None, "unexpected_error",
                                   f"{type(exc).__name__}: {exc}"))
    if ready:
        batch = np.stack([array for _, array in ready])
        probs = checked_predict(predict, batch, len(labels),
                                f"the batch starting with {items[ready[0][0]][0]}")
        for (index, _), p in zip(ready, probs, strict=True):
            source, true_label, _ = items[index]
            best = int(p.argmax())
            rows[index] = Prediction(source, true_label, labels[best], float(p[best]),
                                     [float(v) for v in p], None, None)
    return rows
