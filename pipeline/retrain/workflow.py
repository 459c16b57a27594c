"""``pipeline retrain``: new raw files -> a new dataset version -> a challenger -> promotion.

What to do next is read from the state, never from a log of the last attempt: the newest dataset
version's input snapshot says whether raw files changed; the registry says whether that
version's content has a trained model and whether it was judged. So a crash at any step leaves
the champion as it was, and the next run finishes the work without clean-up; a run with nothing
to do starts neither Spark nor training.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass
from functools import partial
from typing import Literal

from pipeline import storage
from pipeline.config import Config, ConfigError, flatten, with_overrides
from pipeline.datasets.commit import guard_commits
from pipeline.datasets.manifest import VOCAB_NAME, Manifest, committed_versions, open_version
from pipeline.errors import PipelineError
from pipeline.evaluation.promotion import Promotion, finish_interrupted, promote
from pipeline.retrain import gate, inputs
from pipeline.retrain.lock import RetrainLock
from pipeline.tracking import keys, registry, runs
from pipeline.tracking.models import ModelMismatchError, check_fits
from pipeline.tracking.registry import CHAMPION, ModelRef
from pipeline.tracking.tracker import Tracker
from pipeline.train.job import (
    TrainResult,
    check_registered_name,
    register_challenger,
    registered_name,
    train,
)
from pipeline.train.model import choose_model
from pipeline.validation.validate import check

log = logging.getLogger(__name__)

# ingest settings that decide which split an input lands in and what its row holds
SAME_RULES = ("split", "dataset")

Step = Literal["train", "promote"]


@dataclass(frozen=True)
class RetrainResult:
    changes: inputs.Changes
    dataset_url: str | None
    built: bool  # a new dataset version was written
    run_id: str | None  # the parent MLflow run; None when there was nothing to do
    training: TrainResult | None
    model_version: ModelRef | None
    promotion: Promotion | None
    summary: str


def _latest(output_uri: str) -> tuple[str, Manifest] | None:
    """The newest committed ``vNNNN`` (by number, not the LATEST pointer, which a crash right
    after a commit may have left behind)."""
    committed = committed_versions(output_uri)
    return open_version(storage.join(output_uri, committed[-1])) if committed else None


def _fingerprints(output_uri: str) -> set[str]:
    """The content fingerprints of every committed version: a model trained elsewhere on one of
    them (the demo's dataset, re-ingested as v0001) belongs to this folder's lineage."""
    return {open_version(storage.join(output_uri, name))[1].fingerprint
            for name in committed_versions(output_uri)}


def _check_same_rules(cfg: Config, manifest: Manifest, version_uri: str) -> None:
    """Refuse settings that would move old inputs between splits or change their rows."""
    if manifest.kind != cfg.retrain.kind:
        raise ConfigError(f"config key 'retrain.kind': {version_uri} holds {manifest.kind}, "
                          f"not {cfg.retrain.kind}")
    now = cfg.to_dict()
    differing = []
    for section in (manifest.kind, *SAME_RULES):  # "images" or "text", as in the config
        before = flatten(manifest.config.get(section, {}), f"{section}.")
        after = flatten(now[section], f"{section}.")
        differing += [key for key in sorted(before.keys() | after.keys())
                      if before.get(key) != after.get(key)]
    if manifest.kind == "text":
        columns = {"text": cfg.retrain.text_col, "label": cfg.retrain.label_col}
        if manifest.config.get("columns", columns) != columns:
            differing.append("retrain.text_col/label_col")
        if cfg.retrain.text_format not in ("auto", manifest.config.get("format")):
            differing.append("retrain.text_format")
    if differing:
        raise ConfigError(
            f"config key '{differing[0]}' differs from the settings {version_uri} was built with "
            f"({', '.join(differing)}): old inputs would change split or content. Keep them, or "
            "point retrain.output at a new folder")


def _pending(tracker: Tracker, name: str, fingerprint: str
             ) -> tuple[Step | None, ModelRef | None]:
    """What is left for the content ``fingerprint``: train a model, judge it, or nothing (a
    promotion interrupted before its decision tag is finished first)."""
    finish_interrupted(tracker, name)
    trained = registry.versions_tagged(tracker, name, keys.DATASET_FINGERPRINT, fingerprint)
    if not trained:
        return "train", None
    ref, tags = trained[-1]
    return (None if keys.DECISION in tags else "promote"), ref


def _build_version(cfg: Config, source_uri: str, output_uri: str, snapshot: inputs.Snapshot,
                   latest: tuple[str, Manifest] | None, changes: inputs.Changes
                   ) -> tuple[str, Manifest]:
    """Ingest the whole input folder by the same rules into the next ``vNNNN``: inputs keep the
    split their content hash gives them; text keeps the previous vocabulary. Images unchanged
    since the newest version keep its rows (``retrain.reuse_rows``): only new and changed files
    are decoded."""
    from pipeline.ingest.image_job import ingest_images
    from pipeline.ingest.image_reuse import Reuse
    from pipeline.ingest.text_job import ingest_text
    from pipeline.spark import get_spark

    rc = cfg.retrain
    attachments = {inputs.SNAPSHOT_NAME: inputs.to_json(source_uri, snapshot)}
    increment = (gate.increment(output_uri, snapshot, changes) if latest is not None
                 else frozenset())
    spark = get_spark(cfg.spark, app_name="pipeline-retrain-ingest")
    try:
        if rc.kind == "images":
            unchanged = frozenset(snapshot) - frozenset(changes.new + changes.changed)
            reuse = Reuse(latest[0], unchanged) if latest is not None and rc.reuse_rows else None
            manifest = ingest_images(spark, cfg, source_uri, output_uri, mode="new-version",
                                     attachments=attachments, increment=increment, reuse=reuse)
        else:
            vocabulary = (storage.read_text(storage.join(latest[0], VOCAB_NAME))
                          if latest is not None else None)
            manifest = ingest_text(spark, cfg, source_uri, output_uri, mode="new-version",
                                   fmt=rc.text_format, text_col=rc.text_col,
                                   label_col=rc.label_col, vocabulary=vocabulary,
                                   attachments=attachments, increment=increment)
    finally:
        spark.stop()
    return manifest.extra["version_uri"], manifest


def retrain(cfg: Config) -> RetrainResult:
    """One retrain of ``retrain.output`` from ``retrain.input``, under the folder's lock."""
    rc = cfg.retrain
    source_uri, output_uri = storage.to_uri(rc.input), storage.to_uri(rc.output)
    with RetrainLock(rc.lock_dir or output_uri, rc.lock_stale_after_s) as lock:
        return _retrain_locked(cfg, source_uri, output_uri, lock)


def _previous_snapshot(cfg: Config, source_uri: str, latest: tuple[str, Manifest] | None
                       ) -> inputs.Snapshot | None:
    """The input snapshot the newest version recorded, after checking it was built by the same
    rules from the same input."""
    if latest is None:
        return None
    _check_same_rules(cfg, latest[1], latest[0])
    recorded = inputs.read_snapshot(latest[0])
    if recorded is not None and not inputs.same_source(recorded[0], source_uri):
        raise ConfigError(f"config key 'retrain.input' is {source_uri}, but {latest[0]} was "
                          f"built from {recorded[0]}; point retrain.output at a new folder "
                          "for another input")
    return recorded[1] if recorded is not None else None


def _nothing_to_do(cfg: Config, tracker: Tracker, source_uri: str, output_uri: str,
                   latest: tuple[str, Manifest] | None, changes: inputs.Changes) -> str | None:
    """Why this retrain has nothing to do (no input yet; no new data and no unfinished step),
    or None."""
    if latest is None:
        return None if changes.any else f"no files in {source_uri} yet; nothing to do"
    if changes.any:
        return None
    name = registered_name(cfg, output_uri, choose_model(cfg.train.model, latest[1]))
    check_registered_name(cfg, tracker, name, latest[0], partial(_fingerprints, output_uri))
    step, _ = _pending(tracker, name, latest[1].fingerprint)
    if step is None:
        return f"no new data in {source_uri} since {latest[0]}; nothing to do"
    if step == "train":  # never trained: maybe because validation refused it
        gate.check_not_refused(cfg, tracker, name, latest[0])
    log.info("no new data, but %s was left unfinished: %s it now", latest[0], step)
    return None


def _retrain_locked(cfg: Config, source_uri: str, output_uri: str,
                    lock: RetrainLock) -> RetrainResult:
    latest = _latest(output_uri)
    previous = _previous_snapshot(cfg, source_uri, latest)
    log.info("step 1/5: looking for new raw files in %s", source_uri)
    snapshot = inputs.take_snapshot(source_uri, previous)
    changes = inputs.compare(previous, snapshot)
    log.info("%s since %s", changes.summary(), latest[0] if latest else "the start")

    tracker = Tracker.from_config(cfg.mlflow)
    # we hold the lock: a retrain run still RUNNING lost its process
    recovered_by = f"retrain of {time.strftime('%Y-%m-%d %H:%M:%S')} ({socket.gethostname()})"
    for abandoned in runs.fail_abandoned_retrains(tracker, output_uri, recovered_by):
        log.warning("retrain run %s had stopped unfinished; marked FAILED", abandoned)
    idle = _nothing_to_do(cfg, tracker, source_uri, output_uri, latest, changes)
    if idle is not None:
        log.info(idle)
        return RetrainResult(changes=changes, dataset_url=latest[0] if latest else None,
                             built=False, run_id=None, training=None, model_version=None,
                             promotion=None, summary=idle)
    parent = runs.create_run(tracker, "retrain", f"retrain {time.strftime('%Y-%m-%d %H:%M')}",
                             {keys.RETRAIN_OUTPUT: output_uri, keys.RETRAIN_CHANGES:
                              changes.summary()})
    runs.log_params(tracker, parent, cfg.to_dict())
    ok = False
    try:
        result = _run_steps(cfg, tracker, parent, source_uri, output_uri, snapshot, changes,
                            latest, lock)
        ok = True
    finally:
        runs.end_run(tracker, parent, ok)
    return result


@dataclass(frozen=True)
class _Version:
    """The dataset version this retrain works on, and whether it built it."""

    url: str
    manifest: Manifest
    built: bool


def _version_to_train(cfg: Config, tracker: Tracker, parent: str, source_uri: str,
                      output_uri: str, snapshot: inputs.Snapshot, changes: inputs.Changes,
                      latest: tuple[str, Manifest] | None, lock: RetrainLock) -> _Version:
    """Step 2: the next version built from the changed input, or the newest one as it is."""
    if not changes.any and latest is not None:
        version = _Version(latest[0], latest[1], built=False)
    else:
        lock.check()
        log.info("step 2/5: building the next dataset version in %s", output_uri)
        with guard_commits(lock.check):  # a holder that lost the lock commits nothing
            url, manifest = _build_version(cfg, source_uri, output_uri, snapshot, latest,
                                           changes)
        runs.log_ingest_run(tracker, parent, manifest, url, {
            "new": len(changes.new), "changed": len(changes.changed),
            "removed": len(changes.removed)})
        version = _Version(url, manifest, built=True)
    runs.set_tags(tracker, parent, runs.lineage_tags(version.manifest, version.url))
    return version


def _validate(cfg: Config, tracker: Tracker, parent: str, name: str, version: _Version
              ) -> dict[str, str]:
    """Step 3, first: the version's data checked; an error stops the retrain (exit 4) unless
    ``validation.on_error`` is ``warn``. Returns the tags for the registered version."""
    validation = gate.check_version(cfg, tracker, parent, name, version.url)
    if validation is None:
        return {}
    if validation.status == "error" and cfg.validation.on_error == "stop":
        runs.set_tags(tracker, parent, {keys.RETRAIN_DECISION: "refused by validation"})
        runs.describe_run(tracker, parent, (
            f"{version.url.rsplit('/', 1)[-1]} refused by validation (errors in "
            f"{', '.join(validation.named())}): nothing trained or promoted; the report is in "
            "the artifacts, under validation/."))
        check(validation)
    return runs.validation_tags(validation.to_dict())


def _train_challenger(cfg: Config, tracker: Tracker, parent: str, output_uri: str, name: str,
                      version: _Version, lock: RetrainLock) -> tuple[TrainResult, ModelRef]:
    """Step 3: a challenger trained on the version (warm from the champion if configured),
    once its data passed validation."""
    validation_tags = _validate(cfg, tracker, parent, name, version)
    warm_start = (_warm_start_from(tracker, name, version.manifest, version.url)
                  if cfg.retrain.warm_start else None)
    log.info("step 3/5: training a challenger on %s%s", version.url,
             f" from {warm_start}'s weights" if warm_start else "")
    if warm_start:
        cfg = with_overrides(cfg, [f"train.init_from={warm_start}"])
    training = train(cfg, version.url, parent_run_id=parent)
    if not training.model_logged:
        raise PipelineError(f"training run {training.run_id} could not log its model; "
                            "nothing to promote (the next retrain trains again)")
    lock.check()
    return training, register_challenger(cfg, output_uri, training,
                                         {keys.RETRAIN_RUN_ID: parent, **validation_tags})


def _run_steps(cfg: Config, tracker: Tracker, parent: str, source_uri: str, output_uri: str,
               snapshot: inputs.Snapshot, changes: inputs.Changes,
               latest: tuple[str, Manifest] | None, lock: RetrainLock) -> RetrainResult:
    version = _version_to_train(cfg, tracker, parent, source_uri, output_uri, snapshot, changes,
                                latest, lock)
    name = registered_name(cfg, output_uri, choose_model(cfg.train.model, version.manifest))
    check_registered_name(cfg, tracker, name, version.url, partial(_fingerprints, output_uri))
    step, model_version = _pending(tracker, name, version.manifest.fingerprint)
    done = partial(RetrainResult, changes=changes, dataset_url=version.url, built=version.built,
                   run_id=parent)
    training = None
    if step == "train":
        training, model_version = _train_challenger(cfg, tracker, parent, output_uri, name,
                                                    version, lock)
    elif step == "promote":
        log.info("step 3/5: %s was trained on this content already; judging it", model_version)
    else:
        summary = (f"{version.url} holds the same content as the data {model_version} was "
                   "trained on and judged by; nothing to train")
        log.info(summary)
        runs.describe_run(tracker, parent, f"{changes.summary()} raw files. {summary}.")
        return done(training=None, model_version=model_version, promotion=None, summary=summary)
    promotion = _judge(cfg, tracker, parent, name, version, model_version, changes, lock)
    verdict = "promoted to champion" if promotion.decision.promote else "not promoted"
    return done(training=training, model_version=model_version, promotion=promotion,
                summary=f"{model_version} {verdict}: {promotion.decision.reason}")


def _judge(cfg: Config, tracker: Tracker, parent: str, name: str, version: _Version,
           challenger: ModelRef, changes: inputs.Changes, lock: RetrainLock) -> Promotion:
    """Steps 4 and 5: challenger against champion on the test split; the outcome on the run."""
    log.info("step 4/5: evaluating challenger %s and the champion on the test split",
             challenger)
    lock.check()
    promotion = promote(cfg, name, version.url, "test", parent_run_id=parent,
                        challenger=challenger, guard=lock.check)
    log.info("step 5/5: %s", promotion.decision.reason)
    verdict = "promoted to champion" if promotion.decision.promote else "not promoted"
    runs.set_tags(tracker, parent, {
        keys.RETRAIN_MODEL_VERSION: str(challenger),
        keys.RETRAIN_DECISION: "promoted" if promotion.decision.promote else "rejected"})
    runs.describe_run(tracker, parent, (
        f"{changes.summary()} raw files -> {version.url.rsplit('/', 1)[-1]} "
        f"({sum(s.rows for s in version.manifest.splits.values())} rows) -> {challenger} "
        f"{verdict} against {promotion.champion or 'no champion'}: "
        f"{promotion.decision.reason}."))
    return promotion


def _warm_start_from(tracker: Tracker, name: str, manifest: Manifest,
                     dataset_url: str) -> str | None:
    """The champion's model URI when its layers fit this data (same labels and vocabulary);
    otherwise None (a cold start, said in the log)."""
    champion = registry.by_alias(tracker, name, CHAMPION)
    if champion is None:
        return None
    try:
        check_fits(tracker, champion.uri, manifest, dataset_url)
    except ModelMismatchError as exc:
        log.warning("not warm-starting from %s: %s", champion, exc)
        return None
    return champion.uri
