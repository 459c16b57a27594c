"""MinHash band keys: shingle hashes, batch-independent keys, and candidate rates that follow
the banding curve (seeded, so each run draws the same sets)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.ingest import minhash
from pipeline.ingest.minhash import (
    PERMUTATIONS,
    band_keys,
    candidate_chance,
    rows_per_band,
    shingle_hashes,
    sketch_batches,
)
from pipeline.ingest.tokens import tokenize

PATTERN = r"[\w']+"


def test_shingles_are_the_word_k_grams():
    four = shingle_hashes(["a", "b", "c", "d"], 3)
    assert four.dtype == np.int64 and len(four) == 2  # "a b c", "b c d"
    shared = set(shingle_hashes(["x", "a", "b", "c"], 3)) & set(shingle_hashes(
        ["a", "b", "c", "y"], 3))
    assert len(shared) == 1  # "a b c" alone
    assert set(shingle_hashes(["a", "b", "c"], 3)).isdisjoint(shingle_hashes(["c", "b", "a"], 3))
    assert len(shingle_hashes(["a", "b", "a", "b"], 2)) == 2  # distinct: "a b", "b a"
    assert len(shingle_hashes(["a", "b"], 3)) == 1  # shorter than k: one shingle
    assert len(shingle_hashes(["a", "b", "a"], 1)) == 2 and len(shingle_hashes([], 3)) == 0
    with pytest.raises(ValueError):
        shingle_hashes(["a"], 0)


def test_keys_do_not_depend_on_the_batch(monkeypatch):
    monkeypatch.setattr(minhash, "_CHUNK_SHINGLES", 500)  # many chunks
    rng = np.random.default_rng(1)
    sets = [np.unique(rng.integers(-2**63, 2**63 - 1, size=rng.integers(0, 80)))
            for _ in range(300)]  # some empty
    together = band_keys(sets, seed=7, rows=4)
    alone = [band_keys([one], seed=7, rows=4)[0] for one in sets]
    assert all(np.array_equal(a, b) for a, b in zip(together, alone, strict=True))
    assert [len(keys) for keys in together] == [PERMUTATIONS // 4 if len(s) else 0 for s in sets]
    first = next(i for i, one in enumerate(sets) if len(one))
    assert not np.array_equal(band_keys([sets[first]], seed=8, rows=4)[0], together[first])


def _pair(rng: np.random.Generator, size: int, jaccard: float) -> tuple[np.ndarray, ...]:
    """Two sets of ``size`` hashes sharing enough to have about this Jaccard similarity."""
    shared = round(2 * size * jaccard / (1 + jaccard))
    values = rng.choice(2**62, size=2 * size - shared, replace=False).astype(np.int64)
    return np.sort(values[:size]), np.sort(values[size - shared:])


@pytest.mark.parametrize("jaccard", [0.9, 0.8, 0.5, 0.3, 0.1])
@pytest.mark.parametrize("rows", [4, 2])
def test_candidate_rate_follows_the_banding_curve(jaccard, rows):
    rng = np.random.default_rng(round(jaccard * 100) + rows)
    pairs = [_pair(rng, 60, jaccard) for _ in range(400)]
    keys = band_keys([s for pair in pairs for s in pair], seed=42, rows=rows)
    shared = [bool(np.any(keys[2 * i] == keys[2 * i + 1])) for i in range(len(pairs))]
    expected = candidate_chance(jaccard, rows)
    assert abs(np.mean(shared) - expected) < 0.08, (np.mean(shared), expected)


def test_bands_keep_the_recall_at_any_threshold():
    assert rows_per_band(0.8) == 4 and candidate_chance(0.8, 4) > 0.9997
    for jaccard in (0.95, 0.8, 0.7, 0.5, 0.3, 0.1):
        rows = rows_per_band(jaccard)
        assert candidate_chance(jaccard, rows) >= minhash.RECALL, jaccard
        assert rows == 8 or candidate_chance(jaccard, rows * 2) < minhash.RECALL


def test_sketch_batches_keep_the_rows_and_shingle_each_text():
    frame = pd.DataFrame({"path": ["a", "b", "c"], "label_name": ["x", "y", None],
                          "text": ["the cat sat on the mat", None, "one"]})
    out = pd.concat(list(sketch_batches([frame], PATTERN, 3, jaccard=0.8, seed=42)))
    assert out["path"].tolist() == ["a", "b", "c"]
    assert out["label_name"].tolist() == ["x", "y", None]
    expected = shingle_hashes(tokenize("the cat sat on the mat", PATTERN), 3)
    assert np.array_equal(out["shingles"].iloc[0], expected) and len(expected) == 4
    assert [len(s) for s in out["shingles"]] == [4, 0, 1]
    assert [len(b) for b in out["bands"]] == [16, 0, 16]
