"""Bayesian search for sweeps (``method: tpe``); Optuna is imported only here.

Driver side: ``Search``, one sweep's Optuna study stored in SQLite beside the sweep file, asked
for each trial's values and told each outcome, so an interrupted search resumes. Worker side:
``Reporter``, which rank 0 of a trial's training uses at every epoch end to report the
validation metric and ask the study's pruner whether to stop.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState
from pydantic import BaseModel, ConfigDict, StrictInt, model_validator
from sqlalchemy.exc import SQLAlchemyError

from pipeline.errors import PipelineError, first_line
from pipeline.tracking.keys import lower_is_better
from pipeline.train.job import TrainResult
from pipeline.train.spec import TrialRef

log = logging.getLogger(__name__)

# Optuna logs every trial at INFO through its own handler; our sweep logs each trial once
optuna.logging.set_verbosity(optuna.logging.ERROR)

RESULT = "result"  # a trial's user attribute: the fields of its TrainResult
INTERRUPTED = "interrupted"  # a trial's user attribute: it never ended, so it does not count


class Range(BaseModel):
    """A range to search: floats, or integers when both ends are; ``log``: on a log scale."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: StrictInt | float
    high: StrictInt | float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, not {self.low}")
        return self

    @property
    def integers(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)


Space = Mapping[str, list[Any] | Range]


def distributions(space: Space) -> dict[str, BaseDistribution]:
    """Optuna's distributions of a search space. Optuna's categories are scalars, so every
    listed value (a list such as ``conv_filters`` too) is one category: its JSON text."""
    found: dict[str, BaseDistribution] = {}
    for key, values in space.items():
        if isinstance(values, Range):
            kind = IntDistribution if values.integers else FloatDistribution
            found[key] = kind(values.low, values.high, log=values.log)
        else:
            found[key] = CategoricalDistribution([json.dumps(value) for value in values])
    return found


def decode(space: Space, params: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's configuration values from its Optuna parameters (categories from JSON)."""
    return {key: value if isinstance(space[key], Range) else json.loads(value)
            for key, value in params.items()}


def study_location(sweep_path: str | Path, identity: Mapping[str, Any]) -> tuple[str, str]:
    """(storage URL, study name): ``<sweep stem>.study.db`` beside the sweep file, the name
    ``<sweep stem>-<hash of identity>``, so that the same search on the same data resumes and
    any other starts a study of its own."""
    path = Path(sweep_path).resolve()
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    return (f"sqlite:///{path.with_name(f'{path.stem}.study.db')}",
            f"{path.stem}-{digest.hexdigest()[:12]}")


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """median: stop a trial whose epoch is worse than the median of earlier trials' same epoch
    (after 2 trials); halving: successive halving; none: never."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def startup_trials(budget: int) -> int:
    """Trials TPE draws at random before it models the scores: half the budget, at least 3
    (the median pruner compares from the third trial on), at most Optuna's usual 10; with
    Optuna's fixed 10 a budget of 12 would search little more than at random."""
    return max(3, min(10, budget // 2))


def _fields(result: TrainResult) -> dict[str, Any]:
    """What a trial keeps of its training (JSON), to rebuild it in a later invocation."""
    fields = asdict(result)
    del fields["model_version"]  # trials are not registered; the sweep registers the best
    return fields


def _stored_result(fields: Mapping[str, Any]) -> TrainResult:
    """A trial's TrainResult, as ``_fields`` stored it."""
    return TrainResult(**fields, model_version=None)


class Search:
    """One sweep's stored study, asked and told one trial at a time from the driver."""

    def __init__(self, study: optuna.Study, storage: str, metric: str, pruner: str,
                 space: Space) -> None:
        self.study, self.storage, self.metric, self.pruner = study, storage, metric, pruner
        self.space = dict(space)
        self._running: optuna.Trial | None = None

    @classmethod
    def open(cls, storage: str, name: str, metric: str, pruner: str, seed: int,
             space: Space, budget: int) -> Search:
        """Create the study, or load it to resume. Trials an earlier invocation left running
        are failed as interrupted. ``budget``: the sweep's trials (``startup_trials``). The
        sampler's seed is ``seed`` plus the trials already
        stored: the first invocation is reproducible, a resumed one does not redraw its
        start-up values."""
        study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True,
                                    direction="minimize" if lower_is_better(metric)
                                    else "maximize", pruner=make_pruner(pruner))
        study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials),
                                                   n_startup_trials=startup_trials(budget))
        for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            optuna.Trial(study, stale._trial_id).set_user_attr(INTERRUPTED, True)
            study.tell(stale.number, state=TrialState.FAIL)
            log.info("sweep trial %d never ended (an interrupted invocation): it does not count",
                     stale.number)
        return cls(study, storage, metric, pruner, space)

    @property
    def name(self) -> str:
        return self.study.study_name

    def finished(self) -> int:
        """Trials that came to an outcome (complete, pruned, or failed on a NaN or infinite
        metric): what the budget counts. Interrupted trials do not count."""
        ended = self.study.get_trials(deepcopy=False, states=(
            TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
        return sum(1 for trial in ended if not trial.user_attrs.get(INTERRUPTED))

    def ask(self) -> tuple[TrialRef, dict[str, Any]]:
        """A new trial: what its training reports to, and its configuration values."""
        trial = self.study.ask(distributions(self.space))
        self._running = trial
        ref = TrialRef(self.storage, self.name, trial._trial_id, self.metric, self.pruner)
        return ref, decode(self.space, trial.params)

    def tell(self, result: TrainResult | None) -> str:
        """The running trial's outcome: pruned, complete, failed (a NaN or infinite metric),
        or interrupted (``None``: its training raised); returns which."""
        trial, self._running = self._running, None
        if result is None:
            trial.set_user_attr(INTERRUPTED, True)
            self.study.tell(trial, state=TrialState.FAIL)
            return "interrupted"
        trial.set_user_attr(RESULT, _fields(result))
        if result.pruned_epoch is not None:
            self.study.tell(trial, state=TrialState.PRUNED)
            return "pruned"
        if not math.isfinite(result.metric(self.metric)):
            self.study.tell(trial, state=TrialState.FAIL)
            return "failed"
        self.study.tell(trial, result.metric(self.metric))
        return "complete"

    def completed(self) -> list[tuple[dict[str, Any], TrainResult]]:
        """(values, result) of every complete trial of the study, in the order they began."""
        trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return [(decode(self.space, trial.params), _stored_result(trial.user_attrs[RESULT]))
                for trial in trials]

    def recall(self, key: str) -> Any:
        """A value the study keeps for the sweep (``None`` if it has none)."""
        return self.study.user_attrs.get(key)

    def remember(self, key: str, value: Any) -> None:
        """Keep a JSON value with the study, for the next invocation."""
        self.study.set_user_attr(key, value)


class StudyUnreachableError(PipelineError, RuntimeError):
    """Rank 0 of a trial's training cannot open the sweep's study (the SQLite file beside the
    sweep file is on another machine)."""


class Reporter:
    """Rank 0 of a trial's training: reports each epoch's metric to the stored trial and asks
    the study's pruner whether to stop."""

    def __init__(self, ref: TrialRef) -> None:
        try:
            study = optuna.load_study(study_name=ref.study_name, storage=ref.storage,
                                      pruner=make_pruner(ref.pruner),
                                      sampler=optuna.samplers.RandomSampler())  # asks nothing
            self._trial = optuna.Trial(study, ref.trial_id)
        except (KeyError, OSError, SQLAlchemyError) as exc:
            raise StudyUnreachableError(
                f"study {ref.study_name} in {ref.storage} cannot be opened here "
                f"({first_line(exc)}); with launch.launcher spark or hosts, keep the sweep file "
                "in a folder rank 0 shares") from None

    def should_prune(self, epoch: int, value: float) -> bool:
        """Report ``value`` as step ``epoch`` (0-based); True when the pruner stops the trial."""
        self._trial.report(value, step=epoch)
        return self._trial.should_prune()
