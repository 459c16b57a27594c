"""The raw-input model: a table of raw images (file bytes) or texts in, a table of labels out.

What MLflow serves, ``spark_udf`` applies and the registry points at. It prepares each input
with ingest's own per-record code and the training dataset's settings (the manifest and
vocabulary packaged with the model), through the same ``predict_inputs`` as ``pipeline
predict``. One bad input gets its quarantine reason in ``error``; it never fails the batch.
Plain Python: the MLflow wrapper lives in ``pipeline.tracking.serving``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.config import ImagesConfig
from pipeline.datasets.features import encode_image
from pipeline.datasets.manifest import MANIFEST_NAME, VOCAB_NAME, Manifest
from pipeline.datasets.reasons import Reason
from pipeline.inference.records import predict_inputs
from pipeline.ingest.model_input import Prepared, preparer
from pipeline.ingest.rejection import Rejected

if TYPE_CHECKING:
    import pandas as pd

INPUT_COLUMN = {"images": "image", "text": "text"}  # the column the model reads, per kind
OUTPUT_COLUMNS = ("label", "confidence", "probabilities", "error")


class InputColumnError(ValueError):
    """The table lacks the column the model reads."""


def image_bytes(value: object) -> bytes | None:
    """An ``image`` cell as file bytes: bytes as given, a str as base64 (what JSON clients send
    when the server does not decode it for them); raises ``Rejected`` for bad base64."""
    if value is None or isinstance(value, bytes | bytearray | memoryview):
        return None if value is None else bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=False)
        except (binascii.Error, ValueError):
            raise Rejected(Reason.NOT_AN_IMAGE, "a string that is not base64") from None
    raise Rejected(Reason.NOT_AN_IMAGE, f"an image cell of type {type(value).__name__}")


@dataclass(frozen=True)
class RawInputPredictor:
    """Raw inputs -> labels with the model's dataset settings (``from_folder`` builds it)."""

    kind: str
    prepare: Callable[[object], Prepared]
    predict: Callable[[np.ndarray], np.ndarray]
    labels: list[str]

    @classmethod
    def from_folder(cls, dataset_dir: str, predict: Callable[[np.ndarray], np.ndarray]
                    ) -> RawInputPredictor:
        """From the packaged ``manifest.json`` (and ``vocab.txt``) and the tensor model."""
        folder = Path(dataset_dir)
        manifest = Manifest.from_json((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
        vocab = folder / VOCAB_NAME
        prepare = preparer(manifest.kind, manifest.config[manifest.kind],
                           vocab.read_text(encoding="utf-8") if vocab.exists() else None)
        if manifest.kind == "images":
            prepare = _Chain(image_bytes, prepare)
        return cls(manifest.kind, prepare, predict, manifest.labels)

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        """One output row per input row, in order: label, confidence, probabilities (in label
        order), and error (the quarantine reason; label null then)."""
        import pandas as pd

        column = INPUT_COLUMN[self.kind]
        if column not in frame.columns:
            raise InputColumnError(f"this {self.kind} model reads a column '{column}'; the "
                                   f"input has {list(frame.columns)}")
        items = [(str(i), None, value) for i, value in enumerate(frame[column])]
        rows = predict_inputs(items, self.prepare, self.predict, self.labels)
        return pd.DataFrame({"label": [r.predicted_label for r in rows],
                             "confidence": [r.score for r in rows],
                             "probabilities": [r.probabilities for r in rows],
                             "error": [r.reason for r in rows]}, columns=list(OUTPUT_COLUMNS))


@dataclass(frozen=True)
class _Chain:
    """``then(first(value))``, picklable."""

    first: Callable
    then: Callable

    def __call__(self, value):
        return self.then(self.first(value))


def raw_example(manifest: Manifest, inputs: np.ndarray, texts: list[str] | None
                ) -> pd.DataFrame:
    """A few rows in raw form, for the model's input example: image inputs as files of the
    version's encoding, or the stored (cleaned) ``texts``."""
    import pandas as pd

    if manifest.kind == "text":
        return pd.DataFrame({"text": list(texts or [])})
    cfg = ImagesConfig(**manifest.config["images"])
    pixels = np.clip(inputs, 0, 255).astype(np.uint8)
    return pd.DataFrame({"image": [encode_image(p.squeeze(-1) if p.shape[-1] == 1 else p, cfg)
                                   for p in pixels]})
