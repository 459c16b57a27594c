"""``pipeline retrain``: new raw files -> a new dataset version -> a challenger -> promotion.

What to do next is read from the state, never from a log of the last attempt: the newest dataset
version's input snapshot says whether raw files changed; the registry says whether that
version's content has a trained model and whether it was judged. So a crash at any step leaves
the champion as it was, and the next run finishes the work without clean-up; a run with nothing
to do starts neither Spark nor training.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from dataclasses import dataclass
from typing import Literal

from pipeline.config import Config, ConfigError
from pipeline.datasets import storage
from pipeline.datasets.manifest import MANIFEST_NAME, Manifest, open_version
from pipeline.errors import PipelineError
from pipeline.evaluation.promotion import DECISION_TAG, Promotion, promote
from pipeline.retrain import inputs
from pipeline.retrain.lock import RetrainLock
from pipeline.tracking import registry, runs
from pipeline.tracking.registry import CHAMPION, ModelRef
from pipeline.tracking.retry import MODEL_WRITE
from pipeline.tracking.store import absolute_tracking_uri, check_store
from pipeline.train.features import choose_model
from pipeline.train.job import TrainResult, register_challenger, registered_name, train

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
    committed = [name for name in storage.list_names(output_uri) if re.fullmatch(r"v\d+", name)
                 and storage.exists(storage.join(output_uri, name, MANIFEST_NAME))]
    if not committed:
        return None
    return open_version(storage.join(output_uri, max(committed, key=lambda n: int(n[1:]))))


def _check_same_rules(cfg: Config, manifest: Manifest, version_uri: str) -> None:
    """Refuse settings that would move old inputs between splits or change their rows."""
    if manifest.kind != cfg.retrain.kind:
        raise ConfigError(f"config key 'retrain.kind': {version_uri} holds {manifest.kind}, "
                          f"not {cfg.retrain.kind}")
    now = cfg.to_dict()
    differing = []
    for section in (manifest.kind, *SAME_RULES):  # "images" or "text", as in the config
        before = runs.flatten(manifest.config.get(section, {}), f"{section}.")
        after = runs.flatten(now[section], f"{section}.")
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


def _pending(tracking_uri: str, name: str, fingerprint: str) -> tuple[Step | None, ModelRef | None]:
    """What is left for the content ``fingerprint``: train a model, judge it, or nothing."""
    trained = registry.versions_tagged(tracking_uri, name, "dataset.fingerprint", fingerprint)
    if not trained:
        return "train", None
    ref, tags = trained[-1]
    return (None if DECISION_TAG in tags else "promote"), ref


def _build_version(cfg: Config, source_uri: str, output_uri: str, snapshot: inputs.Snapshot,
                   latest: tuple[str, Manifest] | None) -> tuple[str, Manifest]:
    """Ingest the whole input folder by the same rules into the next ``vNNNN``: inputs keep the
    split their content hash gives them; text keeps the previous vocabulary."""
    from pipeline.ingest.image_job import ingest_images
    from pipeline.ingest.text_job import ingest_text
    from pipeline.spark import get_spark

    rc = cfg.retrain
    attachments = {inputs.SNAPSHOT_NAME: inputs.to_json(source_uri, snapshot)}
    spark = get_spark(cfg.spark, app_name="pipeline-retrain-ingest")
    try:
        if rc.kind == "images":
            manifest = ingest_images(spark, cfg, source_uri, output_uri, mode="new-version",
                                     attachments=attachments)
        else:
            vocabulary = (storage.read_text(storage.join(latest[0], "vocab.txt"))
                          if latest is not None else None)
            manifest = ingest_text(spark, cfg, source_uri, output_uri, mode="new-version",
                                   fmt=rc.text_format, text_col=rc.text_col,
                                   label_col=rc.label_col, vocabulary=vocabulary,
                                   attachments=attachments)
    finally:
        spark.stop()
    return manifest.extra["version_uri"], manifest


def retrain(cfg: Config) -> RetrainResult:
    """One retrain of ``retrain.output`` from ``retrain.input``, under the folder's lock."""
    rc = cfg.retrain
    source_uri, output_uri = storage.to_uri(rc.input), storage.to_uri(rc.output)
    with RetrainLock(rc.lock_dir or output_uri, rc.lock_stale_after_s) as lock:
        return _retrain_locked(cfg, source_uri, output_uri, lock)


def _retrain_locked(cfg: Config, source_uri: str, output_uri: str,
                    lock: RetrainLock) -> RetrainResult:
    latest = _latest(output_uri)
    previous = None
    if latest is not None:
        _check_same_rules(cfg, latest[1], latest[0])
        recorded = inputs.read_snapshot(latest[0])
        if recorded is not None and recorded[0] != source_uri:
            raise ConfigError(f"config key 'retrain.input' is {source_uri}, but {latest[0]} was "
                              f"built from {recorded[0]}; point retrain.output at a new folder "
                              "for another input")
        previous = recorded[1] if recorded is not None else None
    log.info("step 1/5: looking for new raw files in %s", source_uri)
    snapshot = inputs.take_snapshot(source_uri, previous)
    changes = inputs.compare(previous, snapshot)
    log.info("%s since %s", changes.summary(), latest[0] if latest else "the start")

    tracking_uri = absolute_tracking_uri(cfg.mlflow.tracking_uri)
    experiment_id = check_store(cfg.mlflow)
    # we hold the lock: a retrain run still RUNNING lost its process
    recovered_by = f"retrain of {time.strftime('%Y-%m-%d %H:%M:%S')} ({socket.gethostname()})"
    for abandoned in runs.fail_abandoned_retrains(tracking_uri, experiment_id, output_uri,
                                                  recovered_by):
        log.warning("retrain run %s had stopped unfinished; marked FAILED", abandoned)
    if latest is None and not changes.any:
        summary = f"no files in {source_uri} yet; nothing to do"
        log.info(summary)
        return RetrainResult(changes=changes, dataset_url=None, built=False, run_id=None,
                             training=None, model_version=None, promotion=None, summary=summary)
    if latest is not None and not changes.any:
        name = registered_name(cfg, output_uri, choose_model(cfg.train.model, latest[1]))
        step, _ = _pending(tracking_uri, name, latest[1].fingerprint)
        if step is None:
            summary = f"no new data in {source_uri} since {latest[0]}; nothing to do"
            log.info(summary)
            return RetrainResult(changes=changes, dataset_url=latest[0], built=False,
                                 run_id=None, training=None, model_version=None,
                                 promotion=None, summary=summary)
        log.info("no new data, but %s was left unfinished: %s it now", latest[0], step)

    parent = runs.create_retrain_run(tracking_uri, experiment_id, cfg.to_dict(), output_uri)
    runs.set_tag(tracking_uri, parent, "retrain.changes", changes.summary())
    ok = False
    try:
        result = _run_steps(cfg, tracking_uri, experiment_id, parent, source_uri, output_uri,
                            snapshot, changes, latest, lock)
        ok = True
    finally:
        runs.end_run(tracking_uri, parent, ok)
    return result


def _run_steps(cfg: Config, tracking_uri: str, experiment_id: str, parent: str, source_uri: str,
               output_uri: str, snapshot: inputs.Snapshot, changes: inputs.Changes,
               latest: tuple[str, Manifest] | None, lock: RetrainLock) -> RetrainResult:
    built = changes.any or latest is None
    if built:
        lock.check()
        log.info("step 2/5: building the next dataset version in %s", output_uri)
        dataset_url, manifest = _build_version(cfg, source_uri, output_uri, snapshot, latest)
        runs.log_ingest_run(tracking_uri, experiment_id, parent, manifest, dataset_url, {
            "new": len(changes.new), "changed": len(changes.changed),
            "removed": len(changes.removed)})
    else:
        dataset_url, manifest = latest
    runs.set_tag(tracking_uri, parent, "dataset.url", dataset_url)
    runs.set_tag(tracking_uri, parent, "dataset.fingerprint", manifest.fingerprint)
    model = choose_model(cfg.train.model, manifest)
    name = registered_name(cfg, output_uri, model)
    step, version = _pending(tracking_uri, name, manifest.fingerprint)

    training = None
    if step == "train":
        warm_start = (_warm_start_from(tracking_uri, name, manifest, dataset_url)
                      if cfg.retrain.warm_start else None)
        log.info("step 3/5: training a challenger on %s%s", dataset_url,
                 f" from {warm_start}'s weights" if warm_start else "")
        training = train(cfg, dataset_url, parent_run_id=parent, warm_start=warm_start)
        if any(f.startswith(MODEL_WRITE) for f in training.mlflow_failures):
            raise PipelineError(f"training run {training.run_id} could not log its model; "
                                "nothing to promote (the next retrain trains again)")
        lock.check()
        version = register_challenger(cfg, output_uri, training, {"retrain.run_id": parent})
    elif step == "promote":
        log.info("step 3/5: %s was trained on this content already; judging it", version)
    if step is None:
        summary = (f"{dataset_url} holds the same content as the data {version} was trained on "
                   "and judged by; nothing to train")
        log.info(summary)
        runs.describe_run(tracking_uri, parent, f"{changes.summary()} raw files. {summary}.")
        return RetrainResult(changes=changes, dataset_url=dataset_url, built=built,
                             run_id=parent, training=None, model_version=version,
                             promotion=None, summary=summary)

    log.info("step 4/5: evaluating challenger %s and the champion on the test split", version)
    lock.check()
    promotion = promote(cfg, name, dataset_url, "test", parent_run_id=parent,
                        challenger=version)
    log.info("step 5/5: %s", promotion.decision.reason)
    verdict = "promoted to champion" if promotion.decision.promote else "not promoted"
    summary = f"{version} {verdict}: {promotion.decision.reason}"
    runs.set_tag(tracking_uri, parent, "retrain.model_version", str(version))
    runs.set_tag(tracking_uri, parent, "retrain.decision",
                 "promoted" if promotion.decision.promote else "rejected")
    runs.describe_run(tracking_uri, parent, (
        f"{changes.summary()} raw files -> {dataset_url.rsplit('/', 1)[-1]} "
        f"({sum(s.rows for s in manifest.splits.values())} rows) -> {version} {verdict} "
        f"against {promotion.champion or 'no champion'}: {promotion.decision.reason}."))
    return RetrainResult(changes=changes, dataset_url=dataset_url, built=built, run_id=parent,
                         training=training, model_version=version, promotion=promotion,
                         summary=summary)


def _warm_start_from(tracking_uri: str, name: str, manifest: Manifest,
                     dataset_url: str) -> str | None:
    """The champion's model URI when its layers fit this data (same labels and vocabulary);
    otherwise None (a cold start, said in the log)."""
    from pipeline.evaluation.job import check_fits
    from pipeline.evaluation.scoring import ModelMismatchError

    champion = registry.by_alias(tracking_uri, name, CHAMPION)
    if champion is None:
        return None
    try:
        check_fits(tracking_uri, champion.uri, manifest, dataset_url)
    except ModelMismatchError as exc:
        log.warning("not warm-starting from %s: %s", champion, exc)
        return None
    return champion.uri
