"""Class imbalance: per-class loss weights (``train.class_weight``) and the acceptance rates
of balanced sampling (``train.sampling``), from the train split's counts. Plain Python."""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.config import ConfigError


def class_weights(setting: str | Mapping[str, float], per_label: Mapping[str, int],
                  label_map: Mapping[str, int]) -> dict[int, float] | None:
    """{class index: loss weight}, or None for ``none``. ``balanced``: n / (classes x n_class),
    so every class weighs the same in total (scikit-learn's rule); a mapping names labels,
    unnamed ones weigh 1."""
    if setting == "none":
        return None
    if setting == "balanced":
        total, present = sum(per_label.values()), [k for k, n in per_label.items() if n > 0]
        return {index: total / (len(present) * per_label[label]) if per_label.get(label) else 1.0
                for label, index in label_map.items()}
    unknown = sorted(set(setting) - set(label_map))
    if unknown:
        raise ConfigError(f"config key 'train.class_weight': {', '.join(unknown)} is not a label "
                          f"of the dataset version (labels: {', '.join(label_map)})")
    return {index: float(setting.get(label, 1.0)) for label, index in label_map.items()}


def acceptance(per_label: Mapping[str, int], label_map: Mapping[str, int]) -> list[float]:
    """Per class index, the chance a row is kept so that every class is drawn as often as the
    rarest: n_rarest / n_class (1 for a class the split lacks)."""
    rarest = min(n for n in per_label.values() if n > 0)
    rates = [1.0] * len(label_map)
    for label, index in label_map.items():
        if per_label.get(label):
            rates[index] = rarest / per_label[label]
    return rates
