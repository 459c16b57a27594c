"""The text job's Python passes over batches (mapInPandas): read and clean, count tokens, add
token ids. Each pass reads and writes pandas frames, so rows cross between the JVM and Python
as Arrow, once per pass; the per-record work is ``text_records`` and ``tokens``.
"""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

import pandas as pd

from pipeline.config import TextConfig
from pipeline.datasets.features import encode_token_ids
from pipeline.datasets.profiles import oov_share, with_oov
from pipeline.ingest.text_records import RawDocument, TextRecord, clean_text_document
from pipeline.ingest.tokens import OOV, Tokenizer, tokenize

Item = TextRecord | RawDocument  # a rejection made while reading, or a document to clean
RECORDS_PER_FRAME = 4096  # records per output frame: Arrow batches of a few MB


def clean_items(items: Iterable[Item], cfg: TextConfig, ratios: dict[str, float]
                ) -> Iterator[TextRecord]:
    """Items -> records: rejections pass through, documents are cleaned."""
    for item in items:
        if isinstance(item, TextRecord):
            yield item
        else:
            source, line, text, label = item
            yield clean_text_document(source, line, text, label, cfg, ratios)


def record_frames(records: Iterable[TextRecord]) -> Iterator[pd.DataFrame]:
    """Records in frames of up to ``RECORDS_PER_FRAME`` rows, columns as ``TextRecord``'s."""
    batch: list[TextRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) == RECORDS_PER_FRAME:
            yield pd.DataFrame(batch, columns=TextRecord._fields, dtype=object)
            batch = []
    if batch:
        yield pd.DataFrame(batch, columns=TextRecord._fields, dtype=object)


def unit_records(frames: Iterable[pd.DataFrame], read: Callable[[object], Iterable[Item]],
                 cfg: TextConfig, ratios: dict[str, float]) -> Iterator[pd.DataFrame]:
    """Frames of pickled work units (``unit``: a byte range, a row group) -> the cleaned
    records of the items ``read`` gives for each."""
    for frame in frames:
        items = (item for blob in frame["unit"] for item in read(pickle.loads(blob)))
        yield from record_frames(clean_items(items, cfg, ratios))


def file_records(frames: Iterable[pd.DataFrame],
                 to_items: Callable[[str, bytes | None, str | None], Iterable[Item]],
                 cfg: TextConfig, ratios: dict[str, float]) -> Iterator[pd.DataFrame]:
    """Frames of read files (``path``, ``content``, ``error``) -> the cleaned records of the
    items ``to_items`` makes of each file."""
    for frame in frames:
        items = (item for path, content, error in zip(frame["path"], frame["content"],
                                                       frame["error"], strict=True)
                 for item in to_items(path, content, error))
        yield from record_frames(clean_items(items, cfg, ratios))


def count_tokens(frames: Iterable[pd.DataFrame], pattern: str) -> Iterator[pd.DataFrame]:
    """Frames of ``text`` -> one frame of (token, count) over them all: each distinct token
    leaves the task once."""
    counts: Counter[str] = Counter()
    for frame in frames:
        for text in frame["text"]:
            counts.update(tokenize(text, pattern))
    yield pd.DataFrame({"token": list(counts), "count": list(counts.values())})


def with_token_ids(frames: Iterable[pd.DataFrame], vocabulary: str, max_len: int,
                   pattern: str) -> Iterator[pd.DataFrame]:
    """Record frames -> the same with ``token_ids`` (stored encoding) and ``length`` for the
    accepted rows, and their share of out-of-vocabulary tokens in their ``profile``."""
    tokenizer = Tokenizer.from_vocab_text(vocabulary, pattern, max_len)  # as serving builds it
    for frame in frames:
        encoded = [_ids_and_profile(tokenizer, text, profile) if reason is None
                   else (None, None, None)
                   for text, reason, profile in zip(frame["text"], frame["reason"],
                                                    frame["profile"], strict=True)]
        ids, lengths, profiles = zip(*encoded, strict=True) if encoded else ((), (), ())
        yield frame.assign(token_ids=list(ids), length=pd.array(lengths, dtype="Int32"),
                           profile=list(profiles))


def _ids_and_profile(tokenizer: Tokenizer, text: str, profile: str) -> tuple[bytes, int, str]:
    """An accepted text's (stored token ids, length, profile with its out-of-vocabulary
    share); a rejected row has none of them."""
    ids, length = tokenizer(text)
    return encode_token_ids(ids), length, with_oov(profile, oov_share(ids, length, OOV))
