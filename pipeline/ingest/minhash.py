"""MinHash sketches of documents' word-shingle sets, and their LSH band keys: documents that
share a band key are candidate near-duplicates, whose exact Jaccard similarity then decides.

``PERMUTATIONS`` MinHash values are cut into bands of ``rows`` values; a pair of Jaccard
similarity J shares a band key with probability ``candidate_chance(J, rows)``, which
``rows_per_band`` keeps at ``RECALL`` or more at the configured threshold (at 0.8: 16 bands of 4,
0.9998; a pair at 0.5 is then a candidate with probability 0.64, at 0.3 with 0.12).
Plain numpy over a batch of documents, so one call sketches thousands at C speed.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from pipeline.ingest.tokens import tokenize

PERMUTATIONS = 64
RECALL = 0.99  # the least chance that a pair at the threshold shares a band key
# shingles sketched at a time: x PERMUTATIONS x 8 bytes = 4 MiB, which stays in cache (a whole
# batch's matrix is ten times slower)
_CHUNK_SHINGLES = 8192
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd: a shingle's hash, word by word


def candidate_chance(jaccard: float, rows: int) -> float:
    """The probability that a pair of this similarity shares one of the band keys."""
    return 1 - (1 - jaccard ** rows) ** (PERMUTATIONS // rows)


def rows_per_band(jaccard: float) -> int:
    """The most rows per band (8, 4, 2 or 1: the fewer candidates to check) with which a pair
    at ``jaccard`` becomes a candidate with probability ``RECALL`` or more (possible from a
    Jaccard similarity of about 0.07 up: the configuration allows 0.1 and more)."""
    return next((rows for rows in (8, 4, 2) if candidate_chance(jaccard, rows) >= RECALL), 1)


def shingle_hashes(tokens: Sequence[str], k: int) -> np.ndarray:
    """The distinct 64-bit hashes (int64) of the word k-shingles of ``tokens``; a document
    shorter than ``k`` is one shingle, an empty one has none. Each word's CRC-32 (stable across
    processes, unlike ``hash``), combined along the shingle in numpy."""
    if k < 1:
        raise ValueError(f"shingle size must be at least 1, got {k}")
    words = np.fromiter((zlib.crc32(token.encode()) for token in tokens), np.uint64,
                        len(tokens))
    width = min(k, len(words))
    count = len(words) - width + 1 if len(words) else 0
    hashes = np.zeros(count, np.uint64)
    for offset in range(width):
        hashes *= _MIX  # wraps modulo 2**64, as meant
        hashes += words[offset:offset + count]
    return np.unique(_finalised(hashes)).view(np.int64)


def _finalised(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit moves about half of the output bits."""
    values = values ^ (values >> np.uint64(30))
    values *= np.uint64(0xBF58476D1CE4E5B9)
    values ^= values >> np.uint64(27)
    values *= np.uint64(0x94D049BB133111EB)
    return values ^ (values >> np.uint64(31))


def _constants(seed: int, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(multipliers, offsets) of the permutations, and the band mixers: 64-bit numbers, the
    multipliers and mixers odd."""
    draw = np.random.default_rng(seed).integers(0, 1 << 63, size=(3, PERMUTATIONS),
                                                 dtype=np.uint64)
    return draw[0] * 2 + 1, draw[1], draw[2][:rows] * 2 + 1


def band_keys(hash_sets: Sequence[np.ndarray], seed: int, rows: int) -> list[np.ndarray]:
    """Each document's shingle hashes -> its ``PERMUTATIONS // rows`` band keys (int64; none
    for a document without a shingle), about ``_CHUNK_SHINGLES`` shingles at a time."""
    constants = _constants(seed, rows)
    keys: list[np.ndarray] = []
    first = held = 0
    for last, hashes in enumerate(hash_sets, start=1):
        held += len(hashes)
        if held >= _CHUNK_SHINGLES or last == len(hash_sets):
            keys += _chunk_keys(hash_sets[first:last], *constants)
            first, held = last, 0
    return keys


def _chunk_keys(hash_sets: Sequence[np.ndarray], multipliers: np.ndarray, offsets: np.ndarray,
                mixers: np.ndarray) -> list[np.ndarray]:
    """``band_keys`` of a few documents. A permutation is ``(a * h + b) mod 2**64``, its top 32
    bits kept (multiply-shift hashing); a band key mixes the band's minima."""
    sizes = np.array([len(h) for h in hash_sets], dtype=np.int64)
    present = sizes > 0
    if not present.any():
        return [np.empty(0, np.int64) for _ in hash_sets]
    flat = np.concatenate([h for h in hash_sets if len(h)]).view(np.uint64)
    permuted = np.multiply.outer(flat, multipliers)  # wraps modulo 2**64, as meant
    permuted += offsets
    permuted >>= np.uint64(32)
    starts = np.concatenate(([0], np.cumsum(sizes[present])[:-1]))
    bands = PERMUTATIONS // len(mixers)
    minima = np.minimum.reduceat(permuted, starts, axis=0).reshape(-1, bands, len(mixers))
    minima *= mixers
    keys = iter(minima.sum(axis=2, dtype=np.uint64).view(np.int64))
    return [next(keys) if has else np.empty(0, np.int64) for has in present]


def sketch_batches(frames: Iterable[pd.DataFrame], pattern: str, k: int, jaccard: float,
                   seed: int) -> Iterator[pd.DataFrame]:
    """Batches of ``path``, ``label_name``, ``text`` -> the same rows with ``shingles`` (the
    text's ``shingle_hashes``) and ``bands`` (their band keys for a threshold of ``jaccard``)
    in place of the text, for mapInPandas."""
    rows = rows_per_band(jaccard)
    for frame in frames:
        hashes = [shingle_hashes(tokenize(text, pattern), k) if text else np.empty(0, np.int64)
                  for text in frame["text"]]
        yield pd.DataFrame({"path": frame["path"], "label_name": frame["label_name"],
                            "shingles": hashes, "bands": band_keys(hashes, seed, rows)})
