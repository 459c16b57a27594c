"""MinHash sketches of documents' shingle sets, and their LSH band keys: documents that share a
band key are candidate near-duplicates, whose exact Jaccard similarity then decides.

With ``BANDS`` bands of ``ROWS`` values, a pair of Jaccard similarity J shares a key with
probability 1 - (1 - J**ROWS)**BANDS: 0.9998 at 0.8, 0.99 at 0.7, 0.64 at 0.5, 0.12 at 0.3.
Plain numpy over a batch of documents, so one call sketches thousands at C speed.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from pipeline.ingest.tokens import tokenize, word_shingles

BANDS = 16
ROWS = 4
_PERMUTATIONS = BANDS * ROWS
_CHUNK = 128  # documents sketched at a time


def shingle_hashes(shingles: Iterable[str]) -> np.ndarray:
    """The distinct CRC-32s of ``shingles``, sorted, as int32 (stable across processes,
    unlike ``hash``)."""
    hashes = np.fromiter((zlib.crc32(s.encode()) for s in shingles), dtype=np.uint32)
    return np.unique(hashes).view(np.int32)


def _constants(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(multipliers, offsets) of the permutations, and the band mixers: 64-bit numbers, the
    multipliers and mixers odd."""
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, 1 << 63, size=(3, _PERMUTATIONS), dtype=np.uint64)
    return draw[0] * 2 + 1, draw[1], draw[2][:ROWS] * 2 + 1


def band_keys(hash_sets: Sequence[np.ndarray], seed: int) -> list[np.ndarray]:
    """Each document's shingle hashes -> its ``BANDS`` band keys (int64; none for a document
    without a shingle). Batched by ``_CHUNK`` documents: a few thousand shingles by
    ``_PERMUTATIONS`` stay in cache, where a whole batch's matrix is ten times slower."""
    constants = _constants(seed)
    keys: list[np.ndarray] = []
    for first in range(0, len(hash_sets), _CHUNK):
        keys += _chunk_keys(hash_sets[first:first + _CHUNK], *constants)
    return keys


def _chunk_keys(hash_sets: Sequence[np.ndarray], multipliers: np.ndarray, offsets: np.ndarray,
                mixers: np.ndarray) -> list[np.ndarray]:
    """``band_keys`` of a few documents. A permutation is ``(a * h + b) mod 2**64``, its top 32
    bits kept (multiply-shift hashing); a band key mixes the band's ``ROWS`` minima."""
    sizes = np.array([len(h) for h in hash_sets], dtype=np.int64)
    present = sizes > 0
    if not present.any():
        return [np.empty(0, np.int64) for _ in hash_sets]
    flat = np.concatenate([h for h in hash_sets if len(h)]).view(np.uint32).astype(np.uint64)
    permuted = np.multiply.outer(flat, multipliers)  # wraps modulo 2**64, as meant
    permuted += offsets
    permuted >>= np.uint64(32)
    starts = np.concatenate(([0], np.cumsum(sizes[present])[:-1]))
    minima = np.minimum.reduceat(permuted, starts, axis=0).reshape(-1, BANDS, ROWS)
    minima *= mixers
    keys = iter(minima.sum(axis=2, dtype=np.uint64).view(np.int64))
    return [next(keys) if has else np.empty(0, np.int64) for has in present]


def sketch_batches(frames: Iterable[pd.DataFrame], pattern: str, k: int, seed: int
                   ) -> Iterator[pd.DataFrame]:
    """Batches of ``path``, ``label_name``, ``text`` -> the same rows with ``shingles`` (the
    hashes of the text's word k-shingles) and ``bands`` (their band keys), for mapInPandas."""
    for frame in frames:
        hashes = [shingle_hashes(word_shingles(tokenize(text, pattern), k)) if text else
                  np.empty(0, np.int32) for text in frame["text"]]
        yield pd.DataFrame({"path": frame["path"], "label_name": frame["label_name"],
                            "shingles": hashes, "bands": band_keys(hashes, seed)})
