"""One raw input -> the model's input, with exactly the preprocessing ingest applied to the
model's dataset version, decoded as training reads it. What prediction, serving and
``pipeline explain`` feed a model. Plain Python: no Spark, no MLflow."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from pipeline.config import ImagesConfig, TextConfig
from pipeline.datasets.features import image_feature
from pipeline.datasets.profiles import Profile
from pipeline.datasets.reasons import Reason
from pipeline.ingest.images import prepare_image
from pipeline.ingest.rejection import Rejected
from pipeline.ingest.text_records import encode_document
from pipeline.ingest.tokens import Tokenizer

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
