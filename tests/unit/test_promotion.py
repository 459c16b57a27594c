"""The promotion rule: better by something and by at least the margin; no champion: promote."""

import pytest

from pipeline.evaluation.promotion import decide


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
