"""What an evaluation explains: per class, the most confident right and wrong rows among the
split's first rows, with their pixel maps (images) or token attributions (text)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipeline import storage
from pipeline.datasets.features import feature_of
from pipeline.datasets.manifest import VOCAB_NAME, Manifest
from pipeline.evaluation import explanations
from pipeline.evaluation.scoring import first_rows
from pipeline.ingest.tokens import PAD, parse_vocab
from pipeline.tracking.models import checked_predict


@dataclass(frozen=True)
class Explained:
    kind: str  # images | text
    titles: list[str]  # per row: "true 3, predicted 5 (0.97)"
    predicted: list[str]  # per row: the predicted label
    images: np.ndarray | None = None  # (rows, H, W, C) pixels 0-255
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (rows, H, W) in [0, 1]
    tokens: list[list[str]] = field(default_factory=list)  # text: each row's words
    attributions: list[np.ndarray] = field(default_factory=list)  # text: one value per word


def _titles(manifest: Manifest, labels: np.ndarray, probs: np.ndarray) -> list[str]:
    return [f"true {manifest.labels[t]}, predicted {manifest.labels[p.argmax()]} ({p.max():.2f})"
            for t, p in zip(labels, probs, strict=True)]


def explain(model, predict: Callable[[np.ndarray], np.ndarray], dataset_url: str,
            manifest: Manifest, split: str, rows: int, per_class: int) -> Explained:
    """Explanations of the chosen rows (``explanations.chosen_rows``) of the first ``rows``."""
    sample = first_rows(dataset_url, manifest, split, rows)
    inputs, labels = sample[feature_of(manifest).field], sample["label"]
    probs = checked_predict(predict, inputs, manifest.num_classes, dataset_url)
    chosen = explanations.chosen_rows(probs, labels, per_class)
    vocab = (storage.read_text(storage.join(dataset_url, VOCAB_NAME))
             if manifest.kind == "text" else None)
    return explain_rows(model, predict, manifest, inputs[chosen], probs[chosen],
                        _titles(manifest, labels[chosen], probs[chosen]), vocab)


def explain_rows(model, predict: Callable[[np.ndarray], np.ndarray], manifest: Manifest,
                 inputs: np.ndarray, probs: np.ndarray, titles: list[str], vocab: str | None
                 ) -> Explained:
    """Pixel maps (images) or token attributions (text, words from ``vocab``) of ``inputs``
    for the class the model predicts for each."""
    classes = probs.argmax(axis=1)
    predicted = [manifest.labels[c] for c in classes]
    if manifest.kind == "images":
        maps = {"integrated_gradients": explanations.integrated_gradients(model, inputs, classes)}
        if explanations.has_convolution(model):  # Grad-CAM reads the last one
            maps = {"grad_cam": explanations.grad_cam(model, inputs, classes), **maps}
        return Explained("images", titles, predicted, inputs, maps)
    words = {i: token for token, i in parse_vocab(vocab or "").items()}
    return Explained("text", titles, predicted,
                     tokens=[[words.get(int(i), "?") for i in row if i != PAD] for row in inputs],
                     attributions=explanations.token_occlusion(predict, inputs, classes))
