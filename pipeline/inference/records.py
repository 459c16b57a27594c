"""One raw input -> the model's input, with exactly the preprocessing ingest applied; and the
model's probabilities -> a prediction row. Plain Python: no Spark, no MLflow."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

import numpy as np

from pipeline.config import ImagesConfig, TextConfig
from pipeline.datasets.features import image_feature
from pipeline.datasets.profiles import Profile, dumps
from pipeline.datasets.reasons import Reason
from pipeline.ingest.images import prepare_image
from pipeline.ingest.rejection import Rejected
from pipeline.ingest.text_records import encode_document
from pipeline.ingest.tokens import Tokenizer
from pipeline.tracking.models import checked_predict


class Prediction(NamedTuple):
    """One input's outcome: a prediction, or the reason ingest would have quarantined it."""

    source: str
    true_label: str | None  # the label folder it came from, if any
    predicted_label: str | None
    score: float | None  # the predicted class's probability
    probabilities: list[float] | None
    reason: str | None
    detail: str | None
    # predicted: the input's profile (as ingest profiles a record) and the confidence, as JSON;
    # what ``pipeline predict`` adds up into the batch's statistics (not an output column)
    profile: str | None = None

    @classmethod
    def rejected(cls, source: str, true_label: str | None, reason: Reason, detail: str | None
                 ) -> Prediction:
        """An input ingest would have quarantined; ``reason`` stored as a plain str (Spark's
        JVM unpickler, which reads rows made in Python, knows no enum)."""
        return cls(source, true_label, None, None, None, str(reason), detail)


Prepared = tuple[np.ndarray, Profile | None]  # the model's input, and the input's profile


def image_input(content: bytes | None, cfg: ImagesConfig) -> Prepared:
    """Raw image bytes -> (float32 (h, w, c): cleaned, resized and encoded as ingest stores it,
    then decoded as training reads it; its profile); raises ``Rejected``."""
    if content is None:
        raise Rejected(Reason.EMPTY_FILE, "no image bytes")
    prepared = prepare_image(bytes(content), cfg)
    return image_feature(cfg).decode(prepared.encoded), prepared.profile


def text_input(content: bytes | str | None, cfg: TextConfig, tokenizer: Tokenizer) -> Prepared:
    """Raw text (a file's bytes or a string) -> (int32 token ids of the vocabulary, cleaned as
    ingest cleans; its profile)."""
    ids, _, profile = encode_document(content, cfg, tokenizer)
    return np.asarray(ids, dtype=np.int32), profile


def preparer(kind: str, preprocessing: dict, vocab: str | None
             ) -> Callable[[bytes | str | None], Prepared]:
    """The raw-input preparation of a dataset version, from its manifest's ``config[kind]``
    (and vocabulary text): a bad setting fails here, named, not on every input."""
    if kind == "images":
        return partial(image_input, cfg=ImagesConfig(**preprocessing))
    if vocab is None:
        raise ValueError("a text dataset version's preprocessing needs its vocabulary")
    text = TextConfig(**preprocessing)
    tokenizer = Tokenizer.from_vocab_text(vocab, text.token_pattern, text.max_len)
    return partial(text_input, cfg=text, tokenizer=tokenizer)


def predict_inputs(items: Sequence[tuple[str, str | None, bytes]],
                   prepare: Callable[[bytes], Prepared],
                   predict: Callable[[np.ndarray], np.ndarray],
                   labels: Sequence[str]) -> list[Prediction]:
    """Prepare every item (a rejection becomes a row with its reason), predict the rest in one
    batch. ``items``: (source, true label or None, raw bytes)."""
    rows: list[Prediction | None] = []
    ready: list[tuple[int, Prepared]] = []
    for source, true_label, content in items:
        try:
            ready.append((len(rows), prepare(content)))
            rows.append(None)
        except Rejected as rejected:
            rows.append(Prediction.rejected(source, true_label, rejected.reason,
                                            rejected.detail))
        except Exception as exc:  # a decoder bug must quarantine one file, not the batch
            rows.append(Prediction.rejected(source, true_label, Reason.UNEXPECTED_ERROR,
                                            f"{type(exc).__name__}: {exc}"))
    if ready:
        batch = np.stack([array for _, (array, _) in ready])
        probs = checked_predict(predict, batch, len(labels),
                                f"the batch starting with {items[ready[0][0]][0]}")
        for (index, (_, profile)), p in zip(ready, probs, strict=True):
            source, true_label, _ = items[index]
            best = int(p.argmax())
            measured = dumps({**(profile or {}), "confidence": float(p[best])})
            rows[index] = Prediction(source, true_label, labels[best], float(p[best]),
                                     [float(v) for v in p], None, None, measured)
    return rows
