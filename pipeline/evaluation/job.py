"""``pipeline evaluate``: score a model on a dataset split and record it as an MLflow run linked
to the model version (tags ``eval.<split>.*`` on the version)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

from pipeline import storage
from pipeline.config import Config
from pipeline.datasets.manifest import Manifest, open_version
from pipeline.evaluation.adversarial import fgsm
from pipeline.evaluation.explained import explain
from pipeline.evaluation.robustness import Robustness, measure
from pipeline.evaluation.scoring import Scores, score_split
from pipeline.tracking import keys, registry, runs
from pipeline.tracking.models import check_fits, keras_predict, load_keras_model
from pipeline.tracking.tracker import Tracker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evaluation:
    run_id: str
    model_uri: str
    model: registry.ModelRef | None
    split: str
    dataset_fingerprint: str
    scores: Scores
    robustness: Robustness | None = None  # evaluation.robustness


def _worst_slice_tag(scores: Scores, split: str) -> dict[str, str]:
    """``eval.<split>.worst_slice``: e.g. ``source=3 (accuracy 0.8123, 117 rows)``."""
    if scores.review is None or not scores.review.worst_slice:
        return {}
    kind, value, row = scores.review.worst_slice
    return {keys.eval_tag(split, "worst_slice"):
            f"{kind}={value} (accuracy {row['accuracy']:.4f}, {row['rows']} rows)"}


def evaluate(cfg: Config, model_uri: str, data: str, split: str = "test",
             parent_run_id: str | None = None, scores_only: bool = False) -> Evaluation:
    """Every row of ``split`` once through the model; metrics and figures in a new run (nested
    under ``parent_run_id`` when given). Robustness and explanations as ``evaluation.*`` asks,
    unless ``scores_only`` (a champion re-scored only to be compared)."""
    dataset_url, manifest = open_version(storage.to_uri(data))
    tracker = Tracker.from_config(cfg.mlflow)
    tracker.experiment_id  # noqa: B018 - the store must answer before the model is read
    ref = registry.resolve(tracker, model_uri)
    resolved = ref.uri if ref is not None else model_uri  # an alias may move meanwhile
    check_fits(tracker, resolved, manifest, dataset_url)
    keras_model = load_keras_model(tracker, resolved)  # one download: scores, FGSM, maps
    predict = keras_predict(keras_model)
    log.info("evaluating %s on %s/%s (%d rows)", ref or model_uri, dataset_url, split,
             manifest.splits[split].rows if split in manifest.splits else 0)
    scores = score_split(predict, dataset_url, manifest, split, cfg.registry.slice_min_rows)
    extras = cfg.evaluation if not scores_only else cfg.evaluation.model_copy(
        update={"robustness": False, "explain_per_class": 0})
    robustness = (_robustness(cfg, keras_model, predict, dataset_url, manifest, split)
                  if extras.robustness else None)
    explained = (explain(keras_model, predict, dataset_url, manifest, split,
                         extras.sample_rows, extras.explain_per_class)
                 if extras.explain_per_class else None)
    run_id = runs.log_evaluation_run(tracker, model_uri, ref, manifest, dataset_url, split,
                                     scores, parent_run_id, robustness, explained)
    if ref is not None:
        registry.tag(tracker, ref, {
            **{keys.eval_tag(split, name): f"{value:.6f}" if name != "rows" else str(value)
               for name, value in runs.review_metrics(scores).items()},
            **_worst_slice_tag(scores, split),
            keys.eval_tag(split, "dataset_fingerprint"): manifest.fingerprint,
            keys.eval_tag(split, "run_id"): run_id})
    log.info("%s on %s: accuracy %.4f, loss %.4f (run %s)", ref or model_uri, split,
             scores.accuracy, scores.loss, run_id)
    for text in _worst_slice_tag(scores, split).values():
        log.info("worst slice: %s", text)
    return Evaluation(run_id, model_uri, ref, split, manifest.fingerprint, scores, robustness)


def _robustness(cfg: Config, keras_model, predict, dataset_url: str, manifest: Manifest,
                split: str) -> Robustness:
    """Accuracy under corruption on the split's first ``evaluation.sample_rows`` rows; images
    also under FGSM, on the Keras model's gradients."""
    adversary = partial(fgsm, keras_model) if manifest.kind == "images" else None
    found = measure(predict, dataset_url, manifest, split, cfg.evaluation.sample_rows,
                    cfg.evaluation.seed, adversary)
    log.info("robustness on %d rows: mean accuracy under corruption %.4f (clean %.4f)",
             found.rows, found.metrics()[keys.ROBUSTNESS_MEAN], found.clean)
    return found
