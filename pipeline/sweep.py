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
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline import storage
from pipeline.config import Config, ConfigError, with_overrides
from pipeline.datasets.manifest import open_version
from pipeline.errors import PipelineError
from pipeline.tracking import keys, runs
from pipeline.tracking.registry import ModelRef
from pipeline.tracking.tracker import Tracker
from pipeline.train.job import (
    TrainResult,
    check_registered_name,
    register_challenger,
    registered_name,
    train,
)
from pipeline.train.model import choose_model

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


class NoFiniteTrialError(PipelineError, RuntimeError):
    """Every trial of a sweep ended with a NaN or infinite metric: none can be the best."""


def _score(metric: str, result: TrainResult) -> float:
    """Lower is better: the loss, or the accuracy negated."""
    return result.val_loss if keys.lower_is_better(metric) else -result.val_accuracy


def best_trial(metric: str, trials: list[tuple[dict[str, Any], TrainResult]]
               ) -> tuple[dict[str, Any], TrainResult]:
    """The trial with the best finite ``metric``; a NaN or infinite one is never chosen (NaN
    compares false with everything, so ``min`` alone could return it); the first wins ties."""
    finite = [trial for trial in trials if math.isfinite(_score(metric, trial[1]))]
    if not finite:
        raise NoFiniteTrialError(f"every sweep trial ended with a NaN or infinite {metric}; "
                                 "there is no best trial to tag or register")
    return min(finite, key=lambda trial: _score(metric, trial[1]))


def _create_sweep_run(tracker: Tracker, spec: SweepSpec, trials: int) -> str:
    """The parent run of a sweep: its method, metric and search space."""
    run_id = runs.create_run(tracker, "sweep", f"sweep {spec.method} x{trials}")
    runs.log_params(tracker, run_id, {"sweep": {"method": spec.method, "metric": spec.metric,
                                                "trials": trials}})
    tracker.client.log_dict(run_id, spec.model_dump(), "sweep.json")
    return run_id


def run_sweep(cfg: Config, data: str, sweep_path: str) -> SweepResult:
    """Validate every trial's configuration first, then train them one after another."""
    spec = read_sweep(sweep_path)
    settings = trial_settings(spec, cfg.train.seed)
    configs = [with_overrides(cfg, [f"{key}={json.dumps(value)}"  # JSON is YAML
                                    for key, value in values.items()]) for values in settings]
    tracker = Tracker.from_config(cfg.mlflow)
    if cfg.registry.register_trained:  # before any trial: the best one is registered
        dataset_url, manifest = open_version(storage.to_uri(data))
        for model in {choose_model(c.train.model, manifest) for c in configs}:
            check_registered_name(cfg, tracker, registered_name(cfg, data, model), dataset_url,
                                  lambda: {manifest.fingerprint})
    parent = _create_sweep_run(tracker, spec, len(settings))
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
        runs.end_run(tracker, parent, ok)
    best_values, best = best_trial(spec.metric, trials)
    value = best.val_loss if spec.metric == "val_loss" else best.val_accuracy
    runs.set_tags(tracker, best.run_id, {keys.SWEEP_BEST: "true"})
    runs.set_tags(tracker, parent, {keys.SWEEP_BEST_RUN: best.run_id})
    runs.log_metrics(tracker, parent, {f"best_{spec.metric}": value})
    version = None
    if cfg.registry.register_trained:
        version = register_challenger(cfg, data, best, {
            keys.SWEEP_RUN_ID: parent, keys.SWEEP_VALUES: json.dumps(best_values)})
    log.info("sweep best: %s (run %s)", best_values, best.run_id)
    return SweepResult(parent, trials, best, version)
