"""``pipeline evaluate``: score a model on a dataset split and record it as an MLflow run linked
to the model version (tags ``eval.<split>.*`` on the version)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pipeline.config import Config
from pipeline.datasets import storage
from pipeline.datasets.manifest import Manifest, open_version
from pipeline.evaluation.scoring import ModelMismatchError, Scores, score_split
from pipeline.tracking import registry, runs
from pipeline.tracking.store import absolute_tracking_uri, check_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evaluation:
    run_id: str
    model_uri: str
    model: registry.ModelRef | None
    split: str
    dataset_fingerprint: str
    scores: Scores


def check_fits(tracking_uri: str, model_uri: str, manifest: Manifest, dataset_url: str) -> None:
    """The model was trained on data with the same labels (and vocabulary) as ``manifest``:
    otherwise its scores would be silently wrong, not low."""
    trained_on, vocab = runs.training_inputs(tracking_uri, registry.model_run(tracking_uri,
                                                                             model_uri))
    if trained_on.kind != manifest.kind or trained_on.labels != manifest.labels:
        raise ModelMismatchError(
            f"{model_uri} was trained on {trained_on.kind} labelled {trained_on.labels}; "
            f"{dataset_url} holds {manifest.kind} labelled {manifest.labels}")
    if vocab is not None and vocab != storage.read_text(storage.join(dataset_url, "vocab.txt")):
        raise ModelMismatchError(f"{model_uri} was trained with another vocabulary than "
                                 f"{dataset_url}'s vocab.txt: its token ids would mean other "
                                 "words")


def evaluate(cfg: Config, model_uri: str, data: str, split: str = "test",
             parent_run_id: str | None = None) -> Evaluation:
    """Every row of ``split`` once through the model; metrics and figures in a new run (nested
    under ``parent_run_id`` when given)."""
    dataset_url, manifest = open_version(storage.to_uri(data))
    tracking_uri = absolute_tracking_uri(cfg.mlflow.tracking_uri)
    experiment_id = check_store(cfg.mlflow)
    ref = registry.resolve(tracking_uri, model_uri)
    resolved = ref.uri if ref is not None else model_uri  # an alias may move meanwhile
    check_fits(tracking_uri, resolved, manifest, dataset_url)
    predict = registry.load_predictor(tracking_uri, resolved)
    log.info("evaluating %s on %s/%s (%d rows)", ref or model_uri, dataset_url, split,
             manifest.splits[split].rows if split in manifest.splits else 0)
    scores = score_split(predict, dataset_url, manifest, split)
    run_id = runs.log_evaluation_run(tracking_uri, experiment_id, model_uri, ref, manifest,
                                     dataset_url, split, scores, parent_run_id)
    if ref is not None:
        registry.tag(tracking_uri, ref, {
            f"eval.{split}.accuracy": f"{scores.accuracy:.6f}",
            f"eval.{split}.loss": f"{scores.loss:.6f}",
            f"eval.{split}.rows": str(scores.rows),
            f"eval.{split}.dataset_fingerprint": manifest.fingerprint,
            f"eval.{split}.run_id": run_id})
    log.info("%s on %s: accuracy %.4f, loss %.4f (run %s)", ref or model_uri, split,
             scores.accuracy, scores.loss, run_id)
    return Evaluation(run_id, model_uri, ref, split, manifest.fingerprint, scores)
