"""Sweep files: validation that names the problem, grid and seeded random trials."""

import math

import pytest

from pipeline.config import ConfigError, load_config
from pipeline.sweep import NoFiniteTrialError, best_trial, read_sweep, run_sweep, trial_settings
from pipeline.train.job import TrainResult


def _write(tmp_path, text: str):
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


def test_grid_is_every_combination(tmp_path):
    spec = read_sweep(_write(tmp_path, "method: grid\nparameters:\n"
                                       "  train.learning_rate: [0.001, 0.01]\n"
                                       "  train.batch_size: [32, 64, 128]\n"))
    trials = trial_settings(spec, seed=1)
    assert len(trials) == 6
    assert {"train.learning_rate": 0.01, "train.batch_size": 128} in trials


def test_random_draws_distinct_trials_reproducibly(tmp_path):
    spec = read_sweep(_write(tmp_path, "method: random\ntrials: 3\nparameters:\n"
                                       "  train.learning_rate: [0.001, 0.003, 0.01, 0.03]\n"
                                       "  train.dropout: [0.0, 0.5]\n"))
    first, again = trial_settings(spec, seed=7), trial_settings(spec, seed=7)
    assert first == again and len(first) == 3
    assert len({tuple(t.values()) for t in first}) == 3


@pytest.mark.parametrize(("text", "message"), [
    ("method: bayes\nparameters: {train.epochs: [1]}\n", "'method'"),
    ("method: grid\n", "'parameters'"),
    ("method: grid\nparameters: {train.epochs: []}\n", "no values to try for train.epochs"),
    ("method: grid\nmetric: f1\nparameters: {train.epochs: [1]}\n", "'metric'"),
    ("method: grid\ntrials: 2\nparameters: {train.epochs: [1]}\n", "'trials' is for method"),
    ("method: grid\nmetric: val_loss\nparameters: {train.loss: [mse, categorical_crossentropy]}\n",
     "cannot be compared"),
])
def test_bad_sweep_files_name_the_problem(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        read_sweep(_write(tmp_path, text))


def test_a_bad_key_fails_before_any_training(tmp_path):
    path = _write(tmp_path, "method: grid\nparameters:\n  train.learning_rte: [0.1]\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.learning_rte'"):
        run_sweep(load_config(), "/nonexistent/dataset", str(path))


def _trial(run_id: str, accuracy: float, loss: float) -> tuple[dict, TrainResult]:
    return {"run": run_id}, TrainResult(run_id, "m", "d", "f", accuracy, loss, [1], [0], 0, 1,
                                        None, [], None)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("metric", ["val_accuracy", "val_loss"])
def test_a_nan_or_infinite_metric_is_never_the_best(metric, bad):
    """NaN first: ``min`` keeps the first item when every comparison with it is false."""
    broken = _trial("broken", bad, bad)
    trials = [broken, _trial("ok", 0.5, 0.9), _trial("better", 0.6, 0.7), broken]
    assert best_trial(metric, trials)[1].run_id == "better"
    assert best_trial(metric, trials[::-1])[1].run_id == "better"


def test_a_sweep_without_a_finite_trial_has_no_best():
    with pytest.raises(NoFiniteTrialError, match="NaN or infinite val_loss"):
        best_trial("val_loss", [_trial("a", math.nan, math.nan), _trial("b", 0.5, math.inf)])
