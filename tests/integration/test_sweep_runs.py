"""Real sweeps on the digits: a 2-trial grid (one parent run, nested training runs, the best
tagged and registered) and a tpe search that prunes, beats the default and resumes."""

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


TPE_SWEEP = """method: tpe
metric: val_accuracy
trials: {trials}
pruner: median
parameters:
  train.learning_rate: [0.003, 0.00001]
  train.image_cnn.conv_filters: [[16], [32, 64]]
  train.dropout: {{low: 0.0, high: 0.3}}
"""


def _final_models(client, run) -> list:
    """The logged models of a run that are not one epoch's weights: the Keras and raw models."""
    from pipeline.tracking import keys

    models = client.search_logged_models([run.info.experiment_id],
                                         filter_string=f"source_run_id = '{run.info.run_id}'")
    return [m for m in models if m.model_type != keys.EPOCH_MODEL_TYPE]


def test_tpe_search_beats_the_default_prunes_and_resumes(digits_dataset, tmp_path):
    """A default that cannot learn the digits in 2 epochs (learning rate 0.00001) against a
    3-trial search whose space holds a rate 300x higher. Seeded with train.seed 42, the
    start-up draws (all 3 at random) give the third trial the low rate: the median rule (from
    the third trial on) prunes it after epoch 1. Then the same command with trials: 4 runs only
    the fourth, which TPE proposes from the three before."""
    from mlflow.tracking import MlflowClient

    from pipeline.train.job import train

    data = digits_dataset[0]
    cfg = make_config(tmp_path, "train.epochs=2", "train.learning_rate=0.00001")
    default = train(cfg, data)  # not registered: the sweep's best is the only version
    sweep = tmp_path / "search.yaml"
    sweep.write_text(TPE_SWEEP.format(trials=3))
    first = run_sweep(cfg, data, str(sweep))

    assert (tmp_path / "search.study.db").exists() and first.study_name.startswith("search-")
    assert len(first.trials) == 3
    assert first.best.val_accuracy > default.val_accuracy + 0.1
    assert first.best.pruned_epoch is None and first.best.epochs_run == 2
    client = MlflowClient(cfg.mlflow.tracking_uri)
    children = [client.get_run(trial.run_id) for _, trial in first.trials]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {first.parent_run_id}
    for (values, _), child in zip(first.trials, children, strict=True):
        assert float(child.data.params["train.learning_rate"]) == values["train.learning_rate"]
        assert child.data.params["train.image_cnn.conv_filters"] == str(
            values["train.image_cnn.conv_filters"])
    pruned = [(values, trial, child) for (values, trial), child
              in zip(first.trials, children, strict=True) if trial.pruned_epoch is not None]
    assert first.pruned == len(pruned) >= 1
    for values, trial, child in pruned:
        assert values["train.learning_rate"] == 0.00001
        assert trial.epochs_run == 1 and child.data.tags["sweep.pruned_epoch"] == "1"
        assert _final_models(client, child) == []  # a pruned trial logs no model
    assert _final_models(client, client.get_run(first.best.run_id))
    assert client.get_run(first.parent_run_id).info.status == "FINISHED"
    assert first.model_version is not None

    sweep.write_text(TPE_SWEEP.format(trials=4))
    second = run_sweep(cfg, data, str(sweep))
    assert second.study_name == first.study_name and len(second.trials) == 1  # only the fourth
    (_, fourth), = second.trials
    assert client.get_run(fourth.run_id).data.tags["mlflow.parentRunId"] == second.parent_run_id
    parent = client.get_run(second.parent_run_id)
    assert parent.data.tags["sweep.resumed_from"] == first.parent_run_id
    assert second.best.val_accuracy >= first.best.val_accuracy  # over the whole study
    assert parent.data.tags["sweep.best_run_id"] == second.best.run_id

    third = run_sweep(cfg, data, str(sweep))  # the budget is spent: no training
    assert third.trials == [] and third.best.run_id == second.best.run_id
    assert third.model_version == second.model_version  # not registered twice
    registered = client.search_model_versions("name = 'digits-image_cnn'")
    assert len(registered) == (1 if second.best.run_id == first.best.run_id else 2)
