"""``pipeline train --sweep FILE``: a grid, random or Bayesian (tpe) search as one parent MLflow
run with one nested training run per trial; the best trial is tagged and registered as the
challenger.

The sweep file::

    method: grid              # grid (every combination) | random (trials of them, seeded) | tpe
    trials: 4                 # random: how many; tpe: the budget of finished trials
    metric: val_accuracy      # what "best" means (a *loss metric: lower wins)
    parameters:               # dotted configuration keys -> the values to try
      train.learning_rate: [0.001, 0.003]
      train.batch_size: [32, 64]

``method: tpe`` asks Optuna's TPE sampler (seeded with ``train.seed``) for each trial's values
and takes ranges besides lists (``train.learning_rate: {low: 0.0001, high: 0.01, log: true}``;
integers when both ends are); ``pruner: median | halving | none`` (median when not given) stops
poor trials at epoch ends; ``minutes: M`` starts no trial after M minutes. Its study is stored
in ``<sweep stem>.study.db`` beside the sweep file, named by a hash of the search, the dataset
version and ``train.*``: the same command resumes it (``trials`` counts every invocation's
finished trials; a trial left running by an interrupted one is failed and not counted).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from time import monotonic
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

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
from pipeline.train.study import Range, Search, study_location

log = logging.getLogger(__name__)


# a parameter's values: a list to choose from (any method), or a range (tpe only)
Choice = Annotated[Annotated[list[Any], Tag("values")] | Annotated[Range, Tag("range")],
                   Discriminator(lambda v: "range" if isinstance(v, dict | Range) else "values")]


class SweepSpec(BaseModel):
    """A sweep file's settings (``read_sweep`` checks what each method takes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["grid", "random", "tpe"]
    trials: int | None = Field(default=None, ge=1)
    metric: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    minutes: float | None = Field(default=None, gt=0)  # tpe only
    pruner: Literal["median", "halving", "none"] | None = None  # tpe only; median when not given
    parameters: dict[str, Choice] = Field(min_length=1)


@dataclass(frozen=True)
class SweepResult:
    """What a sweep ran and chose."""

    parent_run_id: str
    trials: list[tuple[dict[str, Any], TrainResult]]  # this invocation's, in order
    best: TrainResult  # tpe: of every invocation of the study
    model_version: ModelRef | None
    study_name: str | None = None  # tpe: the stored study...
    study_storage: str | None = None  # ...and its database, to resume from
    pruned: int = 0  # tpe: trials of this invocation its pruner stopped


def _method_problems(spec: SweepSpec) -> list[str]:
    """What the method does not take (or lacks), one message per key."""
    if spec.method == "tpe":
        return [] if spec.trials else ["'trials' is required for method tpe (the budget of "
                                       "finished trials)"]
    problems = [f"'{key}' is for method tpe" for key in ("minutes", "pruner")
                if getattr(spec, key) is not None]
    if spec.method == "grid" and spec.trials is not None:
        problems.append("'trials' is for method random or tpe; grid tries every combination")
    return problems + [f"'parameters.{key}': a range (low, high) is for method tpe; "
                       f"{spec.method} takes a list of values"
                       for key, values in spec.parameters.items() if isinstance(values, Range)]


def read_sweep(path: str | Path) -> SweepSpec:
    """The sweep file, validated: every problem names its key."""
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
    problems = _method_problems(spec)
    if problems:
        raise ConfigError(f"sweep file {path}: {'; '.join(problems)}")
    losses = spec.parameters.get("train.loss", [])
    if spec.metric == "val_loss" and isinstance(losses, list) and len(losses) > 1:
        raise ConfigError(f"sweep file {path}: val_loss of different train.loss functions "
                          "cannot be compared; use metric: val_accuracy")
    empty = [key for key, values in spec.parameters.items() if values == []]
    if empty:
        raise ConfigError(f"sweep file {path}: no values to try for {', '.join(empty)}")
    return spec.model_copy(update={"pruner": "median"}) if (
        spec.method == "tpe" and spec.pruner is None) else spec


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
    return result.metric(metric) if keys.lower_is_better(metric) else -result.metric(metric)


def best_trial(metric: str, trials: list[tuple[dict[str, Any], TrainResult]]
               ) -> tuple[dict[str, Any], TrainResult]:
    """The trial with the best finite ``metric``; a NaN or infinite one is never chosen (NaN
    compares false with everything, so ``min`` alone could return it); the first wins ties."""
    finite = [trial for trial in trials if math.isfinite(_score(metric, trial[1]))]
    if not finite:
        raise NoFiniteTrialError(f"every sweep trial ended with a NaN or infinite {metric}; "
                                 "there is no best trial to tag or register")
    return min(finite, key=lambda trial: _score(metric, trial[1]))


def _create_sweep_run(tracker: Tracker, spec: SweepSpec, trials: int,
                      extra: dict[str, Any] | None = None) -> str:
    """The parent run of a sweep: its method, metric, budget and search space."""
    run_id = runs.create_run(tracker, "sweep", f"sweep {spec.method} x{trials}")
    runs.log_params(tracker, run_id, {"sweep": {"method": spec.method, "metric": spec.metric,
                                                "trials": trials, **(extra or {})}})
    tracker.client.log_dict(run_id, spec.model_dump(), "sweep.json")
    return run_id


def _configured(cfg: Config, values: dict[str, Any]) -> Config:
    """``cfg`` with a trial's values (as JSON, which is YAML: lists and numbers keep their type)."""
    return with_overrides(cfg, [f"{key}={json.dumps(value)}" for key, value in values.items()])


def _check_registered_names(cfg: Config, tracker: Tracker, data: str,
                            configs: list[Config]) -> None:
    """Before any trial (the best one is registered): every model's registered name is free."""
    dataset_url, manifest = open_version(storage.to_uri(data))
    for model in {choose_model(c.train.model, manifest) for c in configs}:
        check_registered_name(cfg, tracker, registered_name(cfg, data, model), dataset_url,
                              lambda: {manifest.fingerprint})


def _tag_best(tracker: Tracker, spec: SweepSpec, parent: str,
              candidates: list[tuple[dict[str, Any], TrainResult]]
              ) -> tuple[dict[str, Any], TrainResult]:
    """The best trial, tagged; the parent run names it and logs its metric."""
    best_values, best = best_trial(spec.metric, candidates)
    runs.set_tags(tracker, best.run_id, {keys.SWEEP_BEST: "true"})
    runs.set_tags(tracker, parent, {keys.SWEEP_BEST_RUN: best.run_id})
    runs.log_metrics(tracker, parent, {f"best_{spec.metric}": best.metric(spec.metric)})
    log.info("sweep best: %s (run %s)", best_values, best.run_id)
    return best_values, best


def _register(cfg: Config, data: str, parent: str, values: dict[str, Any],
              best: TrainResult) -> ModelRef:
    """The best trial as the challenger (nested trials are not registered)."""
    return register_challenger(cfg, data, best, {keys.SWEEP_RUN_ID: parent,
                                                 keys.SWEEP_VALUES: json.dumps(values)})


def run_sweep(cfg: Config, data: str, sweep_path: str) -> SweepResult:
    """Validate every value a trial may take first; then train the grid's or random draw's
    trials one after another, or the trials a tpe search asks for until its budget is spent.
    The best is tagged and, with ``registry.register_trained``, registered."""
    spec = read_sweep(sweep_path)
    if spec.method == "tpe":
        return _search(cfg, data, sweep_path, spec)
    settings = trial_settings(spec, cfg.train.seed)
    configs = [_configured(cfg, values) for values in settings]
    tracker = Tracker.from_config(cfg.mlflow)
    if cfg.registry.register_trained:
        _check_registered_names(cfg, tracker, data, configs)
    parent = _create_sweep_run(tracker, spec, len(settings))
    log.info("sweep %s: %d trials (%s), best by %s", parent, len(settings), spec.method,
             spec.metric)
    trials: list[tuple[dict[str, Any], TrainResult]] = []
    ok = False
    try:
        for number, (values, trial_cfg) in enumerate(zip(settings, configs, strict=True), 1):
            log.info("sweep trial %d/%d: %s", number, len(settings), values)
            trials.append((values, train(trial_cfg, data, parent_run_id=parent)))
        ok = True
    finally:
        runs.end_run(tracker, parent, ok)
    best_values, best = _tag_best(tracker, spec, parent, trials)
    version = (_register(cfg, data, parent, best_values, best)
               if cfg.registry.register_trained else None)
    return SweepResult(parent, trials, best, version)


# what a tpe study keeps for the next invocation of its sweep
_PARENT_RUN, _REGISTERED = "parent_run_id", "registered"


def _probes(values: list[Any] | Range) -> list[Any]:
    """Values that show whether a setting takes a parameter: each listed one; a range's ends
    and, for a float range, the float just above low (an integer setting refuses it)."""
    if not isinstance(values, Range):
        return values
    return [values.low, values.high] + ([] if values.integers
                                        else [math.nextafter(values.low, values.high)])


def _check_space(cfg: Config, spec: SweepSpec, sweep_path: str) -> None:
    """Every setting of the search space takes the values a trial may draw, before any
    training."""
    for key, values in spec.parameters.items():
        for value in _probes(values):
            try:
                _configured(cfg, {key: value})
            except ConfigError as exc:
                raise ConfigError(f"sweep file {sweep_path}: 'parameters.{key}' may draw "
                                  f"{value!r}, which the configuration refuses: {exc}") from None


def _open_search(cfg: Config, data: str, sweep_path: str, spec: SweepSpec) -> Search:
    """The stored study of this search (method, metric, pruner, space, without the budget) on
    this dataset version from this training configuration: created, or resumed."""
    dataset_url, _ = open_version(storage.to_uri(data))
    identity = {"sweep": spec.model_dump(exclude={"trials", "minutes"}), "data": dataset_url,
                "train": cfg.train.model_dump(mode="json", exclude={"checkpoint_dir"})}
    url, name = study_location(sweep_path, identity)
    return Search.open(url, name, spec.metric, spec.pruner, cfg.train.seed, spec.parameters,
                       spec.trials)


def _run_trials(cfg: Config, data: str, spec: SweepSpec, search: Search, parent: str
                ) -> list[tuple[dict[str, Any], TrainResult]]:
    """Ask, train nested under ``parent``, tell: until ``trials`` have finished (every
    invocation counts) or, with ``minutes``, no new trial may start."""
    started, trials = monotonic(), []
    while search.finished() < spec.trials:
        if spec.minutes is not None and monotonic() - started >= spec.minutes * 60:
            log.info("sweep: %g minutes have passed; no new trial starts", spec.minutes)
            break
        ref, values = search.ask()
        try:
            result = train(_configured(cfg, values), data, parent_run_id=parent, trial=ref)
        except BaseException:
            search.tell(None)  # interrupted: the next invocation tries another
            raise
        outcome = search.tell(result)
        trials.append((values, result))
        log.info("sweep trial %d/%d: %s -> %s %.4f, %s", search.finished(), spec.trials,
                 values, spec.metric, result.metric(spec.metric),
                 f"pruned after epoch {result.pruned_epoch}" if outcome == "pruned" else outcome)
    return trials


def _register_best(cfg: Config, data: str, search: Search, parent: str,
                   values: dict[str, Any], best: TrainResult) -> ModelRef | None:
    """The best trial as the challenger, unless an earlier invocation registered that run."""
    if not cfg.registry.register_trained:
        return None
    earlier = search.recall(_REGISTERED)
    if earlier and earlier["run_id"] == best.run_id:
        log.info("the best trial (run %s) is registered already", best.run_id)
        return ModelRef(earlier["name"], earlier["version"])
    version = _register(cfg, data, parent, values, best)
    search.remember(_REGISTERED, {"run_id": best.run_id, "name": version.name,
                                  "version": version.version})
    return version


def _search(cfg: Config, data: str, sweep_path: str, spec: SweepSpec) -> SweepResult:
    """tpe: Bayesian search in a study stored beside the sweep file, so that running the same
    command again resumes it; a new parent run each invocation, tagged with the previous."""
    _check_space(cfg, spec, sweep_path)
    tracker = Tracker.from_config(cfg.mlflow)
    if cfg.registry.register_trained:
        _check_registered_names(cfg, tracker, data, [
            _configured(cfg, {"train.model": model})
            for model in spec.parameters.get("train.model", [cfg.train.model])])
    search = _open_search(cfg, data, sweep_path, spec)
    parent = _create_sweep_run(tracker, spec, spec.trials, {
        "pruner": spec.pruner, "minutes": spec.minutes, "study": search.name,
        "storage": search.storage})
    if search.recall(_PARENT_RUN):
        runs.set_tags(tracker, parent, {keys.SWEEP_RESUMED_FROM: search.recall(_PARENT_RUN)})
    search.remember(_PARENT_RUN, parent)
    log.info("sweep %s: study %s, %d of %d trials finished, best by %s", parent, search.name,
             search.finished(), spec.trials, spec.metric)
    ok = False
    try:
        trials = _run_trials(cfg, data, spec, search, parent)
        ok = True
    finally:
        runs.end_run(tracker, parent, ok)
    best_values, best = _tag_best(tracker, spec, parent, search.completed())
    version = _register_best(cfg, data, search, parent, best_values, best)
    return SweepResult(parent, trials, best, version, search.name, search.storage,
                       sum(1 for _, result in trials if result.pruned_epoch is not None))
