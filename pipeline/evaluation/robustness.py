"""Accuracy under corruption: a seeded sample of a split, each corruption of
``corruptions`` at three severities, and for images an adversarial check (FGSM). Logged with the
evaluation as ``robustness.<corruption>.<severity>.accuracy``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline import storage
from pipeline.datasets.features import feature_of
from pipeline.datasets.manifest import VOCAB_NAME, Manifest
from pipeline.evaluation import corruptions
from pipeline.evaluation.scoring import first_rows
from pipeline.ingest.tokens import Tokenizer
from pipeline.tracking import keys
from pipeline.tracking.models import checked_predict

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Robustness:
    rows: int
    clean: float  # accuracy on the sample, uncorrupted
    curves: dict[str, list[float]]  # corruption (and "fgsm") -> accuracy at severities 1, 2, 3

    def metrics(self) -> dict[str, float]:
        """Every accuracy, the mean over the corruptions (FGSM aside) and that mean relative
        to the clean accuracy."""
        flat = {keys.robustness_metric(name, severity): accuracy
                for name, accuracies in self.curves.items()
                for severity, accuracy in enumerate(accuracies, start=1)}
        mean = float(np.mean([a for name, accs in self.curves.items() if name != keys.FGSM
                              for a in accs]))
        return flat | {keys.robustness_metric("clean"): self.clean,
                       keys.ROBUSTNESS_MEAN: mean,
                       keys.ROBUSTNESS_RELATIVE: mean / self.clean if self.clean else 0.0}


def _accuracies(predict: Predict, versions: list[np.ndarray], labels: np.ndarray,
                classes: int) -> list[float]:
    """Accuracy of each version of the sample, predicted in one call (one call costs Keras
    about as much as a few hundred rows)."""
    probs = checked_predict(predict, np.concatenate(versions), classes, "a corrupted sample")
    right = probs.argmax(axis=1).reshape(len(versions), len(labels)) == labels
    return [float(r.mean()) for r in right]


def _text_encoder(dataset_url: str, manifest: Manifest) -> Callable[[list[str]], np.ndarray]:
    """Cleaned texts -> token ids, as ingest encoded this version."""
    text = manifest.config["text"]
    tokenize = Tokenizer.from_vocab_text(storage.read_text(storage.join(dataset_url, VOCAB_NAME)),
                                         text["token_pattern"], text["max_len"])
    return lambda texts: np.stack([tokenize(t)[0] for t in texts])


def measure(predict: Predict, dataset_url: str, manifest: Manifest, split: str, rows: int,
            seed: int, adversary: Callable[[np.ndarray, np.ndarray, float], np.ndarray] | None
            ) -> Robustness:
    """Accuracy of ``predict`` on a sample of ``split`` under every corruption of the version's
    kind; ``adversary(inputs, labels, epsilon)`` adds FGSM's rows (images)."""
    sample = first_rows(dataset_url, manifest, split, rows)
    field, labels, classes = feature_of(manifest).field, sample["label"], manifest.num_classes
    inputs = sample[field]
    curves: dict[str, list[float]] = {}

    def score(corrupt: Callable[[float, np.random.Generator], np.ndarray], levels) -> list[float]:
        return _accuracies(predict, [corrupt(level, np.random.default_rng([seed, severity]))
                                     for severity, level in enumerate(levels, start=1)],
                           labels, classes)

    if manifest.kind == "images":
        for c in corruptions.IMAGE_CORRUPTIONS:
            curves[c.name] = score(lambda level, rng, c=c: c.apply(inputs, level, rng), c.levels)
        if adversary is not None:
            curves[keys.FGSM] = score(lambda eps, _: adversary(inputs, labels, eps),
                                      corruptions.FGSM_EPSILONS)
    else:
        for c in corruptions.TOKEN_CORRUPTIONS:
            curves[c.name] = score(lambda level, rng, c=c: c.apply(inputs, level, rng), c.levels)
        encode, texts = _text_encoder(dataset_url, manifest), [str(t) for t in sample["text"]]
        for c in corruptions.TEXT_CORRUPTIONS:
            curves[c.name] = score(lambda level, rng, c=c: encode(c.apply(texts, level, rng)),
                                   c.levels)
    return Robustness(len(labels), _accuracies(predict, [inputs], labels, classes)[0], curves)
