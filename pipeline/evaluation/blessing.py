"""What a challenger must show before it may become champion, besides beating the champion
overall (``promotion.decide``): absolute thresholds, and no slice that got clearly worse. Pure
functions of two evaluations' scores; the serving check is ``serving_check``.

A slice counts when it has at least ``registry.slice_min_rows`` rows in both evaluations, and
regresses only when its accuracy drop exceeds ``registry.slice_margin`` by more than the 95%
confidence half-width of the difference: small slices do not block promotions at random.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.config import RegistryConfig
from pipeline.evaluation.scoring import Scores

Z_95 = 1.96  # two-sided 95% normal quantile


@dataclass(frozen=True)
class Check:
    name: str  # thresholds | slices | serving
    passed: bool
    detail: str


def threshold_check(cfg: RegistryConfig, scores: Scores) -> Check:
    """The challenger's own numbers against ``registry.min_accuracy``, ``min_macro_f1`` and
    ``max_ece`` (macro-F1 and calibration need a review)."""
    failures = []
    if scores.accuracy < cfg.min_accuracy:
        failures.append(f"accuracy {scores.accuracy:.4f} < min_accuracy {cfg.min_accuracy:g}")
    review = scores.review
    if review is not None and review.macro_f1 < cfg.min_macro_f1:
        failures.append(f"macro-F1 {review.macro_f1:.4f} < min_macro_f1 {cfg.min_macro_f1:g}")
    if review is not None and review.ece > cfg.max_ece:
        failures.append(f"calibration error {review.ece:.4f} > max_ece {cfg.max_ece:g}")
    return Check("thresholds", not failures, "; ".join(failures) or "all thresholds met")


def slice_regressions(cfg: RegistryConfig, challenger: Scores, champion: Scores
                      ) -> list[str]:
    """The slices (with enough rows in both) where the challenger is clearly worse."""
    found = []
    mine, theirs = challenger.review.slices, champion.review.slices
    for kind in sorted(mine.keys() & theirs.keys()):
        for value in sorted(mine[kind].keys() & theirs[kind].keys()):
            new, old = mine[kind][value], theirs[kind][value]
            if min(new["rows"], old["rows"]) < cfg.slice_min_rows:
                continue
            drop = old["accuracy"] - new["accuracy"]
            spread = Z_95 * math.sqrt(_variance(old) + _variance(new))
            if drop > cfg.slice_margin + spread:
                found.append(f"{kind}={value}: {old['accuracy']:.4f} -> "
                             f"{new['accuracy']:.4f} ({new['rows']} rows)")
    return found


def _variance(row: dict) -> float:
    p = row["accuracy"]
    return p * (1 - p) / row["rows"]


def slice_check(cfg: RegistryConfig, challenger: Scores, champion: Scores | None) -> Check:
    """No slice regressed against the champion (nothing to compare: passed)."""
    if champion is None or challenger.review is None or champion.review is None:
        return Check("slices", True, "no champion slices to compare")
    regressed = slice_regressions(cfg, challenger, champion)
    return Check("slices", not regressed,
                 "worse on " + "; ".join(regressed) if regressed else
                 f"no slice worse by more than {cfg.slice_margin:g} beyond its 95% interval")
