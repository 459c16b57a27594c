"""``pipeline evaluate``: score a model on a dataset split and record it as an MLflow run linked
to the model version (tags ``eval.<split>.*`` on the version)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pipeline.config import Config
from pipeline.datasets import storage
from pipeline.datasets.manifest import open_version
from pipeline.evaluation.scoring import Scores, score_split
from pipeline.tracking import registry
from pipeline.tracking.runs import log_evaluation_run
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


def evaluate(cfg: Config, model_uri: str, data: str, split: str = "test") -> Evaluation:
    """Every row of ``split`` once through the model; metrics and figures in a new run."""
    dataset_url, manifest = open_version(storage.to_uri(data))
    tracking_uri = absolute_tracking_uri(cfg.mlflow.tracking_uri)
    experiment_id = check_store(cfg.mlflow)
    ref = registry.resolve(tracking_uri, model_uri)
    predict = registry.load_predictor(tracking_uri, model_uri)
    log.info("evaluating %s on %s/%s (%d rows)", ref or model_uri, dataset_url, split,
             manifest.splits[split].rows if split in manifest.splits else 0)
    scores = score_split(predict, dataset_url, manifest, split)
    run_id = log_evaluation_run(tracking_uri, experiment_id, model_uri, ref, manifest,
                                dataset_url, split, scores)
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
