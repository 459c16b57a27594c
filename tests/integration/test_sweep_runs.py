"""A real 2-trial sweep: one parent run, nested training runs, the best tagged and registered."""

from __future__ import annotations

import pytest

from pipeline.sweep import run_sweep
from pipeline.tracking import registry
from pipeline.tracking.tracker import Tracker
from tests.conftest import make_config


def test_grid_sweep_nests_trials_and_registers_the_best(digits_dataset, tmp_path):
    from mlflow.tracking import MlflowClient

    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("method: grid\nmetric: val_accuracy\nparameters:\n"
                     "  train.learning_rate: [0.002, 0.00001]\n")
    cfg = make_config(tmp_path, "train.epochs=1")
    result = run_sweep(cfg, digits_dataset[0], str(sweep))
    assert [values["train.learning_rate"] for values, _ in result.trials] == [0.002, 0.00001]
    client = MlflowClient(cfg.mlflow.tracking_uri)
    children = [client.get_run(trial.run_id) for _, trial in result.trials]
    assert [c.data.params["train.learning_rate"] for c in children] == ["0.002", "1e-05"]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {result.parent_run_id}

    # a learning rate 200x smaller cannot learn the digits in one epoch
    assert result.best is result.trials[0][1]
    assert client.get_run(result.best.run_id).data.tags["sweep.best"] == "true"
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["sweep.best_run_id"] == result.best.run_id
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(result.best.val_accuracy)
    tracker = Tracker.from_config(cfg.mlflow)
    challenger = registry.by_alias(tracker, "digits-image_cnn", "challenger")
    assert challenger == result.model_version
    assert registry.version_tags(tracker, challenger)["train.run_id"] == (
        result.best.run_id)
    assert len(client.search_registered_models()[0].latest_versions) == 1  # only the best
