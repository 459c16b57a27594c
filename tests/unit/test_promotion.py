"""The promotion rule (better by something and by at least the margin; no champion: promote)
and the blessing a winner still needs: thresholds, and no slice clearly worse."""

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.evaluation.blessing import slice_check, threshold_check
from pipeline.evaluation.promotion import decide
from pipeline.evaluation.scoring import Review, Scores


@pytest.mark.parametrize(("metric", "challenger", "champion", "margin", "promote"), [
    ("accuracy", 0.91, None, 0.0, True),
    ("accuracy", 0.91, 0.90, 0.0, True),
    ("accuracy", 0.90, 0.90, 0.0, False),  # a tie keeps the champion
    ("accuracy", 0.905, 0.90, 0.01, False),
    ("accuracy", 0.92, 0.90, 0.01, True),
    ("loss", 0.30, 0.35, 0.01, True),  # lower loss wins
    ("loss", 0.35, 0.30, 0.0, False),
])
def test_decide(metric, challenger, champion, margin, promote):
    decision = decide(metric, challenger, champion, margin)
    assert decision.promote is promote
    assert (decision.reason == "no champion yet") is (champion is None)


def _scores(accuracy: float, slices: dict[str, tuple[int, float]], macro_f1: float = 0.9,
            ece: float = 0.05) -> Scores:
    """Scores whose review has ``slices``: source folder -> (rows, accuracy)."""
    review = Review(macro_f1=macro_f1, roc_auc=0.95, ece=ece, calibration=[],
                    slices={"source": {k: {"rows": n, "accuracy": a}
                                       for k, (n, a) in slices.items()}}, worst_slice=None)
    return Scores(rows=1000, loss=0.3, accuracy=accuracy, confusion=np.eye(2), review=review)


REGISTRY = load_config(overrides=["registry.slice_margin=0.02", "registry.slice_min_rows=30",
                                  "registry.min_accuracy=0.8", "registry.max_ece=0.1"]).registry


def test_better_overall_but_clearly_worse_on_one_slice_is_not_blessed():
    champion = _scores(0.90, {"cam1": (400, 0.90), "cam2": (400, 0.90)})
    challenger = _scores(0.93, {"cam1": (400, 0.99), "cam2": (400, 0.80)})
    assert decide("accuracy", 0.93, 0.90, 0.0).promote
    check = slice_check(REGISTRY, challenger, champion)
    assert not check.passed and check.detail.startswith("worse on source=cam2: 0.9000 -> 0.8000")


def test_small_slices_and_drops_within_chance_do_not_block():
    champion = _scores(0.90, {"big": (400, 0.90), "tiny": (10, 0.9), "noisy": (40, 0.90)})
    challenger = _scores(0.93, {"big": (400, 0.89), "tiny": (10, 0.1), "noisy": (40, 0.80)})
    # tiny: under slice_min_rows; noisy: 0.10 drop < 0.02 + 1.96 x its standard error (~0.16)
    assert slice_check(REGISTRY, challenger, champion).passed


def test_thresholds_hold_whatever_the_champion():
    assert threshold_check(REGISTRY, _scores(0.85, {})).passed
    low = threshold_check(REGISTRY, _scores(0.75, {}, ece=0.2))
    assert not low.passed
    assert low.detail == ("accuracy 0.7500 < min_accuracy 0.8; "
                          "calibration error 0.2000 > max_ece 0.1")
