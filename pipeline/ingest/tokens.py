"""Tokens, the vocabulary and token ids: shared by the ingest job and by inference.

Works on cleaned text (``text.clean_text``) and knows nothing about cleaning, so that it can
be loaded with a dataset version's ``vocab.txt`` alone. Cleaned text is one line (every
whitespace run is one space), so no token can hold a line break and ``vocab.txt`` needs no
escaping: one token per line, the line's index is the token's id. ``vocab_text`` refuses a
token that would break that rule rather than escape it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

PAD, OOV = 0, 1
RESERVED = ("<pad>", "<oov>")  # ids PAD and OOV


@lru_cache(maxsize=16)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def tokenize(text: str, pattern: str) -> list[str]:
    """Every non-empty match of ``pattern``, in order (whole matches, even if it has groups)."""
    compiled = _compiled(pattern)
    if compiled.groups:  # findall would give the groups
        return [match.group() for match in compiled.finditer(text) if match.group()]
    return [token for token in compiled.findall(text) if token]


def build_vocab(counts: Mapping[str, int], size: int, min_count: int) -> list[str]:
    """The vocabulary, index = id: the reserved tokens, then up to ``size`` tokens seen at least
    ``min_count`` times, most frequent first, ties in token order (deterministic)."""
    frequent = sorted(((-count, token) for token, count in counts.items()
                       if count >= min_count and token not in RESERVED))
    return [*RESERVED, *(token for _, token in frequent[:size])]


def vocab_text(vocab: Sequence[str]) -> str:
    """``vocab.txt``: one token per line, line i (from 0) holding the token with id i."""
    _check_vocab(vocab)
    return "".join(token + "\n" for token in vocab)


def parse_vocab(text: str) -> dict[str, int]:
    """``vocab.txt`` -> {token: id}; raises ``ValueError`` on a file ``vocab_text`` cannot write."""
    vocab = text.split("\n")
    if vocab and vocab[-1] == "":
        vocab.pop()
    _check_vocab(vocab)
    return {token: index for index, token in enumerate(vocab)}


def _check_vocab(vocab: Sequence[str]) -> None:
    if tuple(vocab[:len(RESERVED)]) != RESERVED:
        raise ValueError(f"a vocabulary starts with {', '.join(RESERVED)}")
    for index, token in enumerate(vocab):
        if token.splitlines() != [token]:
            raise ValueError(f"token {index} ({token!r}) is empty or holds a line break")
    if len(set(vocab)) != len(vocab):
        raise ValueError("the vocabulary repeats a token")


def encode(tokens: Sequence[str], vocab: Mapping[str, int], max_len: int
           ) -> tuple[np.ndarray, int]:
    """(int32 ids of exactly ``max_len``: the first tokens, OOV if unknown, then PAD; the number
    of real ids before the padding)."""
    length = min(len(tokens), max_len)
    ids = np.full(max_len, PAD, dtype=np.int32)
    ids[:length] = [vocab.get(token, OOV) for token in tokens[:length]]
    return ids, length


@dataclass(frozen=True)
class Tokenizer:
    """Cleaned text -> (ids, length) exactly as the ingest job encodes a dataset version.

    Build it from the version's ``vocab.txt`` and the ``token_pattern`` and ``max_len`` its
    manifest records; ``text_records.encode_document`` adds the cleaning for raw input.
    """

    pattern: str
    vocab: Mapping[str, int]
    max_len: int

    @classmethod
    def from_vocab_text(cls, text: str, pattern: str, max_len: int) -> Tokenizer:
        """The tokeniser of a ``vocab.txt``: ingest and serving build it alike, so ids match."""
        return cls(pattern, parse_vocab(text), max_len)

    def __call__(self, cleaned: str) -> tuple[np.ndarray, int]:
        return encode(tokenize(cleaned, self.pattern), self.vocab, self.max_len)
