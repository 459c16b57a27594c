"""MinHash band keys: stable hashes, batch-independent keys, and candidate rates that follow
the banding curve (seeded, so each run draws the same sets)."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest

from pipeline.ingest.minhash import BANDS, ROWS, band_keys, shingle_hashes, sketch_batches
from pipeline.ingest.tokens import tokenize, word_shingles

pytestmark = pytest.mark.unit
PATTERN = r"[\w']+"


def test_shingle_hashes_are_sorted_distinct_crc32s():
    hashes = shingle_hashes(["a b c", "b c d", "a b c"])
    expected = sorted({zlib.crc32(b"a b c"), zlib.crc32(b"b c d")})
    assert hashes.dtype == np.int32
    assert hashes.view(np.uint32).tolist() == expected
    assert shingle_hashes([]).size == 0


def test_keys_do_not_depend_on_the_batch():
    rng = np.random.default_rng(1)
    sets = [np.unique(rng.integers(-2**31, 2**31, size=rng.integers(0, 80))).astype(np.int32)
            for _ in range(300)]  # more than one chunk, some empty
    together = band_keys(sets, seed=7)
    alone = [band_keys([one], seed=7)[0] for one in sets]
    assert all(np.array_equal(a, b) for a, b in zip(together, alone, strict=True))
    assert [len(keys) for keys in together] == [BANDS if len(s) else 0 for s in sets]
    first = next(i for i, one in enumerate(sets) if len(one))
    assert not np.array_equal(band_keys([sets[first]], seed=8)[0], together[first])


def _pair(rng: np.random.Generator, size: int, jaccard: float) -> tuple[np.ndarray, ...]:
    """Two sets of ``size`` hashes sharing enough to have about this Jaccard similarity."""
    shared = round(2 * size * jaccard / (1 + jaccard))
    values = rng.choice(2**31, size=2 * size - shared, replace=False).astype(np.int32)
    return np.sort(values[:size]), np.sort(values[size - shared:])


@pytest.mark.parametrize("jaccard", [0.9, 0.8, 0.5, 0.3, 0.1])
def test_candidate_rate_follows_the_banding_curve(jaccard):
    rng = np.random.default_rng(round(jaccard * 100))
    pairs = [_pair(rng, 60, jaccard) for _ in range(400)]
    keys = band_keys([s for pair in pairs for s in pair], seed=42)
    shared = [bool(np.any(keys[2 * i] == keys[2 * i + 1])) for i in range(len(pairs))]
    expected = 1 - (1 - jaccard ** ROWS) ** BANDS
    assert abs(np.mean(shared) - expected) < 0.08, (np.mean(shared), expected)


def test_sketch_batches_keep_the_rows_and_shingle_each_text():
    frame = pd.DataFrame({"path": ["a", "b", "c"], "label_name": ["x", "y", None],
                          "text": ["the cat sat on the mat", None, "one"]})
    out = pd.concat(list(sketch_batches([frame], PATTERN, 3, seed=42)))
    assert out["path"].tolist() == ["a", "b", "c"]
    assert out["label_name"].tolist() == ["x", "y", None]
    expected = shingle_hashes(word_shingles(tokenize("the cat sat on the mat", PATTERN), 3))
    assert np.array_equal(out["shingles"].iloc[0], expected) and len(expected) == 4
    assert [len(s) for s in out["shingles"]] == [4, 0, 1]
    assert [len(b) for b in out["bands"]] == [BANDS, 0, BANDS]
