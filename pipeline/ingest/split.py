"""Deterministic split assignment from a content hash: stable across reruns and data growth."""

from __future__ import annotations

from pipeline.datasets.features import SPLITS


def assign_split(content_hash: str, ratios: dict[str, float]) -> str:
    """Map a hex digest to a split: the first 60 bits as a uniform number in [0, 1)."""
    position = int(content_hash[:15], 16) / float(16**15)
    cumulative = 0.0
    chosen = None
    for name in SPLITS:
        share = ratios.get(name, 0.0)
        if share <= 0:
            continue
        chosen = name
        cumulative += share
        if position < cumulative:
            return name
    if chosen is None:
        raise ValueError("no split has a positive ratio")
    return chosen  # rounding: ratios summing to 0.9999999 still place every hash
