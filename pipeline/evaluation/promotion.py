"""``pipeline promote``: the challenger replaces the champion only when it beats it on the same
test split by the configured margin and is blessed (thresholds, no slice clearly worse, served
over HTTP with the same answers); the decision and every number go on the model version."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipeline import storage
from pipeline.config import Config, RegistryConfig
from pipeline.datasets.manifest import open_version
from pipeline.evaluation.blessing import Check, slice_check, threshold_check
from pipeline.evaluation.job import Evaluation, evaluate
from pipeline.evaluation.serving_check import serving_check
from pipeline.tracking import keys, registry, runs
from pipeline.tracking.model_card import Judgement, card_link, write_model_card
from pipeline.tracking.models import ModelMismatchError
from pipeline.tracking.registry import CHALLENGER, CHAMPION, ModelRef
from pipeline.tracking.tracker import Tracker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(metric: str, challenger: float, champion: float | None, margin: float) -> Decision:
    """Accuracy must rise, loss must fall, by at least ``margin`` (and by something: a tie keeps
    the champion); no champion: promote."""
    if champion is None:
        return Decision(True, "no champion yet")
    gain = challenger - champion if metric == "accuracy" else champion - challenger
    if gain > 0 and gain >= margin:
        return Decision(True, f"{metric} {challenger:.4f} vs {champion:.4f}: better by "
                              f"{gain:.4f} >= margin {margin:g}")
    return Decision(False, f"{metric} {challenger:.4f} vs {champion:.4f}: better by "
                           f"{gain:.4f}, not more than 0 and at least margin {margin:g}")


@dataclass(frozen=True)
class Promotion:
    challenger: ModelRef
    champion: ModelRef | None  # before the decision
    decision: Decision
    evaluations: dict[str, Evaluation]  # by alias
    checks: list[Check] = field(default_factory=list)  # the blessing, when it got that far
    serving: dict[str, float] = field(default_factory=dict)  # what the serving check measured


def bless(cfg: Config, tracker: Tracker, decision: Decision, evaluations: dict[str, Evaluation],
          challenger: ModelRef, data: str, split: str
          ) -> tuple[Decision, list[Check], dict[str, float]]:
    """A challenger that wins must also pass the thresholds and the slice check, then (only
    then: it costs a server start) the serving check; any failure keeps the champion."""
    if not decision.promote:
        return decision, [], {}
    mine = evaluations[CHALLENGER].scores
    theirs = evaluations[CHAMPION].scores if CHAMPION in evaluations else None
    checks = [threshold_check(cfg.registry, mine), slice_check(cfg.registry, mine, theirs)]
    measured: dict[str, float] = {}
    if all(c.passed for c in checks) and cfg.registry.serving_check:
        dataset_url, manifest = open_version(storage.to_uri(data))
        report = serving_check(tracker, challenger.uri, dataset_url, manifest, split,
                               cfg.registry.serving_sample)
        checks.append(report.check)
        measured = report.numbers
    failed = [f"{c.name}: {c.detail}" for c in checks if not c.passed]
    if failed:
        decision = Decision(False, f"{decision.reason}; not blessed: {'; '.join(failed)}")
    return decision, checks, measured


def promote(cfg: Config, name: str, data: str | None = None, split: str = "test",
            parent_run_id: str | None = None, challenger: ModelRef | None = None,
            guard: Callable[[], None] | None = None) -> Promotion:
    """Evaluate challenger and champion on one split and move the ``champion`` alias or not.

    ``data``: the dataset version to compare on; default: the challenger's training data.
    ``parent_run_id``: nest the evaluation runs under this run (a retrain's).
    ``challenger``: the version to judge; default: the one with the ``challenger`` alias.
    ``guard``: called right before the alias moves (the retrain lock's check).
    The alias moves only if it still points at the champion that was judged (re-read first);
    otherwise ``AliasMovedError`` and the challenger stays unjudged. A promotion interrupted
    between the alias and its decision tag is finished first (``finish_interrupted``).
    """
    tracker = Tracker.from_config(cfg.mlflow)
    finish_interrupted(tracker, name)
    challenger = challenger or registry.by_alias(tracker, name, CHALLENGER)
    if challenger is None:
        raise registry.RegistryError(f"registered model '{name}' has no '{CHALLENGER}' version; "
                                     "train one first (pipeline train registers it)")
    champion = registry.by_alias(tracker, name, CHAMPION)
    if data is None:
        data = registry.version_tags(tracker, challenger).get(keys.DATASET_URL)
        if data is None:
            raise registry.RegistryError(f"{challenger} has no dataset.url tag (not registered "
                                         "by pipeline train); pass --data")
    evaluations = {CHALLENGER: evaluate(cfg, challenger.uri, data, split, parent_run_id)}
    metric, margin = cfg.registry.metric, cfg.registry.margin
    try:
        if champion is not None and champion != challenger:
            evaluations[CHAMPION] = evaluate(cfg, champion.uri, data, split, parent_run_id,
                                             scores_only=True)
        decision = decide(metric, evaluations[CHALLENGER].scores.metric(metric),
                          evaluations[CHAMPION].scores.metric(metric)
                          if CHAMPION in evaluations else None, margin)
    except ModelMismatchError as exc:  # new labels or vocabulary: a person decides
        decision = Decision(False, f"the champion {champion} cannot score this data ({exc}); "
                                   "if the new labels are intended, move the alias by hand")
    decision, checks, measured = bless(cfg, tracker, decision, evaluations, challenger, data,
                                       split)
    judged = Promotion(challenger, champion, decision, evaluations, checks, measured)
    _record(tracker, judged, cfg.registry, split, guard)
    # a training that finished meanwhile owns the challenger alias: leave it to the next promote
    if decision.promote and registry.by_alias(tracker, name, CHALLENGER) == challenger:
        registry.delete_alias(tracker, name, CHALLENGER)
    log.info("%s: %s (%s)", challenger, "promoted to champion" if decision.promote
             else "stays challenger", decision.reason)
    return judged


def _record(tracker: Tracker, judged: Promotion, rules: RegistryConfig, split: str,
            guard: Callable[[], None] | None) -> None:
    """The numbers on the challenger, then (when promoted) the alias by compare-and-set, then
    the card and the decision tag: its presence means the version was judged and the alias
    holds."""
    metric, margin = rules.metric, rules.margin
    challenger, champion, decision = judged.challenger, judged.champion, judged.decision
    evaluations = judged.evaluations
    numbers = {alias: ev.scores.metric(metric) for alias, ev in evaluations.items()}
    when = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    p = keys.PROMOTION
    registry.tag(tracker, challenger, {
        f"{p}reason": decision.reason, f"{p}metric": metric, f"{p}margin": str(margin),
        f"{p}split": split,
        f"{p}dataset_fingerprint": evaluations[CHALLENGER].dataset_fingerprint,
        f"{p}challenger_value": f"{numbers[CHALLENGER]:.6f}",
        f"{p}champion": str(champion) if champion else "none",
        f"{p}champion_value": (f"{numbers[CHAMPION]:.6f}" if CHAMPION in numbers else "none"),
        f"{p}at": when,
        **{f"{p}check.{c.name}": f"{'passed' if c.passed else 'failed'}: {c.detail}"
           for c in judged.checks},
        **{f"{p}serving.{k}": f"{v:.6g}" for k, v in judged.serving.items()}})
    if decision.promote:
        if guard is not None:
            guard()
        registry.move_alias(tracker, challenger, CHAMPION, expected=champion)
    verdict = "promoted" if decision.promote else "rejected"
    _write_decision(tracker, challenger, champion if decision.promote else None, verdict, (
        f"{when}: {verdict} against {champion or 'no champion'} on the {split} split "
        f"({evaluations[CHALLENGER].scores.rows} rows, dataset "
        f"{evaluations[CHALLENGER].dataset_fingerprint[:12]}): {decision.reason}."
        + _card(tracker, judged, verdict, split, rules.slice_min_rows)), when)


def _card(tracker: Tracker, judged: Promotion, verdict: str, split: str, min_rows: int) -> str:
    """Rewrite the challenger's model card with this judgement; the link for its description
    ("" for a version no pipeline training made)."""
    run_id = registry.version_tags(tracker, judged.challenger).get(keys.TRAIN_RUN_ID)
    if run_id is None:
        return ""
    evaluation = judged.evaluations[CHALLENGER]
    scores, robustness = evaluation.scores, evaluation.robustness
    review = scores.review
    judgement = Judgement(verdict, judged.decision.reason, split, runs.review_metrics(scores),
                          review.slices if review else {}, min_rows, scores.confusion,
                          [(c.name, c.passed, c.detail) for c in judged.checks],
                          robustness.curves if robustness else {},
                          robustness.clean if robustness else None)
    path = write_model_card(tracker, judged.challenger, run_id, judgement)
    return " " + card_link(run_id, path) if path else ""


def _write_decision(tracker: Tracker, judged: ModelRef, replaced: ModelRef | None,
                    verdict: str, description: str, when: str) -> None:
    """The decision tag (last of the judgement), the description, and the replaced champion's
    ``replaced_by``."""
    registry.tag(tracker, judged, {keys.DECISION: verdict})
    registry.describe(tracker, judged, description)
    if replaced is not None and replaced != judged:
        registry.tag(tracker, replaced, {keys.REPLACED_BY: str(judged), keys.REPLACED_AT: when})


def finish_interrupted(tracker: Tracker, name: str) -> ModelRef | None:
    """Record the decision of a champion that has none: a promotion that stopped between moving
    the alias and tagging the decision (its numbers are on the version), or an alias moved by
    hand. Returns the version repaired, if any; retrains and ``promote`` call it first."""
    champion = registry.by_alias(tracker, name, CHAMPION)
    if champion is None:
        return None
    tags = registry.version_tags(tracker, champion)
    if keys.DECISION in tags:
        return None
    when = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    reason = tags.get(f"{keys.PROMOTION}reason")
    if reason is None:
        reason = "the champion alias was set without pipeline promote (by hand)"
        registry.tag(tracker, champion, {f"{keys.PROMOTION}reason": reason,
                                         f"{keys.PROMOTION}at": when})
        replaced = None
    else:
        replaced = registry.parse_ref(tags.get(f"{keys.PROMOTION}champion", "none"))
    log.warning("%s holds '%s' but its decision was not recorded (an interrupted promotion, or "
                "an alias moved by hand); recording it as promoted", champion, CHAMPION)
    _write_decision(tracker, champion, replaced, "promoted", (
        f"{when}: promoted against {replaced or 'no recorded champion'} ({reason}); decision "
        "recorded after an interruption."), when)
    if registry.by_alias(tracker, name, CHALLENGER) == champion:
        registry.delete_alias(tracker, name, CHALLENGER)
    return champion
