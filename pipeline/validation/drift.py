"""How far apart two histograms are: Jensen-Shannon distance, and whether the difference is
more than sampling noise (a chi-squared test of homogeneity)."""

from __future__ import annotations

import math
from collections.abc import Mapping

from scipy.stats import chi2_contingency


def shares(counts: Mapping[str, float], keys: list[str]) -> list[float]:
    """Counts over ``keys`` as shares summing to 1 (all zero when there is no count)."""
    total = sum(counts.get(k, 0) for k in keys)
    return [counts.get(k, 0) / total if total else 0.0 for k in keys]


def js_distance(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Jensen-Shannon distance (base 2: 0 for equal distributions, 1 for disjoint ones)."""
    keys = sorted({*a, *b})
    p, q = shares(a, keys), shares(b, keys)
    if not any(p) or not any(q):
        return 0.0 if p == q else 1.0
    divergence = 0.0
    for x, y in zip(p, q, strict=True):
        m = (x + y) / 2
        divergence += (x * math.log2(x / m) if x else 0.0) + (y * math.log2(y / m) if y else 0.0)
    return math.sqrt(max(divergence / 2, 0.0))


def homogeneity_pvalue(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """p-value of a chi-squared test that both histograms sample one distribution (1.0 when
    there is nothing to test: one bin, or an empty histogram)."""
    keys = [k for k in sorted({*a, *b}) if a.get(k, 0) + b.get(k, 0) > 0]
    if len(keys) < 2 or not sum(a.values()) or not sum(b.values()):
        return 1.0
    table = [[a.get(k, 0) for k in keys], [b.get(k, 0) for k in keys]]
    return float(chi2_contingency(table, correction=False).pvalue)
