"""Raw inputs through a model: each prepared as ingest prepares it (``ingest.model_input``),
the model's probabilities -> a prediction row. Plain Python: no Spark, no MLflow."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from pipeline.datasets.profiles import dumps
from pipeline.datasets.reasons import Reason
from pipeline.ingest.model_input import Prepared
from pipeline.ingest.rejection import Rejected
from pipeline.tracking.models import checked_predict


class Prediction(NamedTuple):
    """One input's outcome: a prediction, or the reason ingest would have quarantined it."""

    source: str
    true_label: str | None  # the label folder it came from, if any
    predicted_label: str | None
    score: float | None  # the predicted class's probability
    probabilities: list[float] | None
    reason: str | None
    detail: str | None
    # predicted: the input's profile (as ingest profiles a record) and the confidence, as JSON;
    # what ``pipeline predict`` adds up into the batch's statistics (not an output column)
    profile: str | None = None

    @classmethod
    def rejected(cls, source: str, true_label: str | None, reason: Reason, detail: str | None
                 ) -> Prediction:
        """An input ingest would have quarantined; ``reason`` stored as a plain str (Spark's
        JVM unpickler, which reads rows made in Python, knows no enum)."""
        return cls(source, true_label, None, None, None, str(reason), detail)


def predict_inputs(items: Sequence[tuple[str, str | None, bytes]],
                   prepare: Callable[[bytes], Prepared],
                   predict: Callable[[np.ndarray], np.ndarray],
                   labels: Sequence[str]) -> list[Prediction]:
    """Prepare every item (a rejection becomes a row with its reason), predict the rest in one
    batch. ``items``: (source, true label or None, raw bytes)."""
    rows: list[Prediction | None] = []
    ready: list[tuple[int, Prepared]] = []
    for source, true_label, content in items:
        try:
            ready.append((len(rows), prepare(content)))
            rows.append(None)
        except Rejected as rejected:
            rows.append(Prediction.rejected(source, true_label, rejected.reason,
                                            rejected.detail))
        except Exception as exc:  # a decoder bug must quarantine one file, not the batch
            rows.append(Prediction.rejected(source, true_label, Reason.UNEXPECTED_ERROR,
                                            f"{type(exc).__name__}: {exc}"))
    if ready:
        batch = np.stack([array for _, (array, _) in ready])
        probs = checked_predict(predict, batch, len(labels),
                                f"the batch starting with {items[ready[0][0]][0]}")
        for (index, (_, profile)), p in zip(ready, probs, strict=True):
            source, true_label, _ = items[index]
            best = int(p.argmax())
            measured = dumps({**(profile or {}), "confidence": float(p[best])})
            rows[index] = Prediction(source, true_label, labels[best], float(p[best]),
                                     [float(v) for v in p], None, None, measured)
    return rows
