"""Accuracy under corruption, measured by ``evaluate`` on the session's digits and reviews
models and recorded in the evaluation run: every corruption at three severities."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import with_overrides
from pipeline.evaluation import corruptions
from pipeline.evaluation.job import evaluate
from pipeline.tracking import keys


def _evaluated(model_fixture, dataset_fixture):
    from mlflow.tracking import MlflowClient

    cfg, result = model_fixture
    cfg = with_overrides(cfg, ["evaluation.robustness=true"])
    run_id = evaluate(cfg, result.model_version.uri, dataset_fixture[0], "test").run_id
    client = MlflowClient(tracking_uri=cfg.mlflow.tracking_uri)
    return client, run_id, client.get_run(run_id).data.metrics


def _curves(metrics: dict[str, float], names) -> dict[str, list[float]]:
    return {name: [metrics[keys.robustness_metric(name, s)] for s in (1, 2, 3)] for name in names}


def _check_severity_order(curves: dict[str, list[float]]) -> None:
    """Worse with severity: each corruption's third level no better than its first, and the
    mean over corruptions falls at every step."""
    for name, (first, _, third) in curves.items():
        assert third <= first + 0.02, (name, curves[name])
    means = np.mean(list(curves.values()), axis=0)
    assert means[0] > means[1] > means[2], means


@pytest.mark.parametrize("kind", ["images", "text"])
def test_evaluation_records_accuracy_under_each_corruption(kind, request):
    fixtures = ("digits_model", "digits_dataset") if kind == "images" else (
        "reviews_model", "reviews_dataset")
    client, run_id, metrics = _evaluated(*(request.getfixturevalue(f) for f in fixtures))
    names = ([c.name for c in corruptions.IMAGE_CORRUPTIONS] if kind == "images" else
             [c.name for c in (*corruptions.TOKEN_CORRUPTIONS, *corruptions.TEXT_CORRUPTIONS)])
    curves = _curves(metrics, names)
    _check_severity_order(curves)
    clean = metrics[keys.robustness_metric("clean")]
    mean = float(np.mean(list(curves.values())))
    assert metrics[keys.ROBUSTNESS_MEAN] == pytest.approx(mean)
    assert metrics[keys.ROBUSTNESS_RELATIVE] == pytest.approx(mean / clean)
    assert mean < clean
    figure = [a.path for a in client.list_artifacts(run_id, keys.ROBUSTNESS)]
    assert figure == [keys.ROBUSTNESS_FIGURE]
    if kind == "images":  # the adversarial check, on the model's own gradients
        fgsm = _curves(metrics, [keys.FGSM])[keys.FGSM]
        assert clean > fgsm[0] > fgsm[1] > fgsm[2], (clean, fgsm)
    else:
        assert not any(keys.FGSM in name for name in metrics)
