"""``pipeline train --sweep FILE``: a grid or random search as one parent MLflow run with one
nested training run per trial; the best trial is tagged and registered as the challenger.

The sweep file::

    method: grid              # grid (every combination) | random (trials of them, seeded)
    trials: 4                 # random only
    metric: val_accuracy      # what "best" means (a *loss metric: lower wins)
    parameters:               # dotted configuration keys -> the values to try
      train.learning_rate: [0.001, 0.003]
      train.batch_size: [32, 64]
"""

from __future__ import annotations

import itertools
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.config import Config, ConfigError, with_overrides
from pipeline.tracking import runs
from pipeline.tracking.compare import lower_is_better
from pipeline.tracking.registry import ModelRef
from pipeline.tracking.store import absolute_tracking_uri, check_store
from pipeline.train.job import TrainResult, register_challenger, train

log = logging.getLogger(__name__)


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["grid", "random"]
    trials: int | None = Field(default=None, ge=1)
    metric: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    parameters: dict[str, list[Any]] = Field(min_length=1)


@dataclass(frozen=True)
class SweepResult:
    parent_run_id: str
    trials: list[tuple[dict[str, Any], TrainResult]]
    best: TrainResult
    model_version: ModelRef | None


def read_sweep(path: str | Path) -> SweepSpec:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read sweep file {path}: {exc}") from None
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"'{'.'.join(map(str, e['loc']))}': {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(f"sweep file {path}: {problems}") from None
    if spec.method == "grid" and spec.trials is not None:
        raise ConfigError(f"sweep file {path}: 'trials' is for method random; grid tries every "
                          "combination")
    if spec.metric == "val_loss" and len(spec.parameters.get("train.loss", [])) > 1:
        raise ConfigError(f"sweep file {path}: val_loss of different train.loss functions "
                          "cannot be compared; use metric: val_accuracy")
    empty = [key for key, values in spec.parameters.items() if not values]
    if empty:
        raise ConfigError(f"sweep file {path}: no values to try for {', '.join(empty)}")
    return spec


def trial_settings(spec: SweepSpec, seed: int) -> list[dict[str, Any]]:
    """The combinations to train: all of them (grid) or ``trials`` of them drawn with ``seed``."""
    keys = list(spec.parameters)
    grid = [dict(zip(keys, values, strict=True))
            for values in itertools.product(*spec.parameters.values())]
    if spec.method == "grid":
        return grid
    count = min(spec.trials or len(grid), len(grid))
    return random.Random(seed).sample(grid, count)


def run_sweep(cfg: Config, data: str, sweep_path: str) -> SweepResult:
    """Validate every trial's configuration first, then train them one after another."""
    spec = read_sweep(sweep_path)
    settings = trial_settings(spec, cfg.train.seed)
    configs = [with_overrides(cfg, [f"{key}={json.dumps(value)}"  # JSON is YAML
                                    for key, value in values.items()]) for values in settings]
    tracking_uri = absolute_tracking_uri(cfg.mlflow.tracking_uri)
    experiment_id = check_store(cfg.mlflow)
    parent = runs.create_sweep_run(tracking_uri, experiment_id, spec.model_dump(), len(settings))
    log.info("sweep %s: %d trials (%s), best by %s", parent, len(settings), spec.method,
             spec.metric)
    trials: list[tuple[dict[str, Any], TrainResult]] = []
    ok = False
    try:
        for number, (values, trial_cfg) in enumerate(zip(settings, configs, strict=True), 1):
            log.info("sweep trial %d/%d: %s", number, len(settings), values)
            # nested trials are not registered: only the best becomes the challenger, below
            trials.append((values, train(trial_cfg, data, parent_run_id=parent)))
        ok = True
    finally:
        runs.end_run(tracking_uri, parent, ok)
    score = (lambda r: r.val_loss) if lower_is_better(spec.metric) else (
        lambda r: -r.val_accuracy)
    best_values, best = min(trials, key=lambda trial: score(trial[1]))
    runs.mark_best_trial(tracking_uri, parent, best.run_id, spec.metric,
                         best.val_loss if spec.metric == "val_loss" else best.val_accuracy)
    version = None
    if cfg.registry.register_trained:
        version = register_challenger(cfg, data, best, {"sweep.run_id": parent,
                                                         "sweep.values": json.dumps(best_values)})
    log.info("sweep best: %s (run %s)", best_values, best.run_id)
    return SweepResult(parent, trials, best, version)
