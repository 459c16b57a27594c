"""Sweep files: validation that names the problem, grid and seeded random trials; tpe's search
space, and its study stored in SQLite (resumed, pruned) with a fake training in place of one."""

import math

import pytest

from pipeline.config import ConfigError, load_config
from pipeline.sweep import NoFiniteTrialError, best_trial, read_sweep, run_sweep, trial_settings
from pipeline.train.job import TrainResult
from pipeline.train.spec import TrialRef
from pipeline.train.study import (
    Range,
    Reporter,
    Search,
    StudyUnreachableError,
    decode,
    distributions,
    study_location,
)


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
    ("method: grid\nparameters: {train.learning_rate: {low: 0.001, high: 0.1}}\n",
     "'parameters.train.learning_rate': a range .* is for method tpe; grid takes a list"),
    ("method: random\ntrials: 2\nparameters: {train.dropout: {low: 0.0, high: 0.5}}\n",
     "'parameters.train.dropout': a range"),
    ("method: tpe\nparameters: {train.epochs: [1]}\n", "'trials' is required for method tpe"),
    ("method: tpe\ntrials: 3\npruner: hyperband\nparameters: {train.epochs: [1]}\n",
     "'pruner': Input should be 'median', 'halving' or 'none'"),
    ("method: random\ntrials: 2\npruner: median\nparameters: {train.epochs: [1]}\n",
     "'pruner' is for method tpe"),
    ("method: grid\nminutes: 5\nparameters: {train.epochs: [1]}\n", "'minutes' is for method tpe"),
    ("method: tpe\ntrials: 3\nminutes: 0\nparameters: {train.epochs: [1]}\n", "'minutes'"),
    ("method: tpe\ntrials: 3\nparameters: {train.learning_rate: {low: 0.1, high: 0.01}}\n",
     r"'parameters.train.learning_rate.range': .*low \(0.1\) must be below high"),
    ("method: tpe\ntrials: 3\nparameters: {train.l2: {low: 0.0, high: 0.1, log: true}}\n",
     "'parameters.train.l2.range': .*a log range needs low > 0"),
    ("method: tpe\ntrials: 3\nparameters: {train.learning_rate: {low: 0.1}}\n",
     "'parameters.train.learning_rate.range.high': Field required"),
    ("method: tpe\ntrials: 3\nparameters: {train.learning_rate: 0.1}\n",
     "'parameters.train.learning_rate.values': Input should be a valid list"),
])
def test_bad_sweep_files_name_the_problem(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        read_sweep(_write(tmp_path, text))


def test_a_bad_key_fails_before_any_training(tmp_path):
    path = _write(tmp_path, "method: grid\nparameters:\n  train.learning_rte: [0.1]\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.learning_rte'"):
        run_sweep(load_config(), "/nonexistent/dataset", str(path))


@pytest.mark.parametrize(("parameter", "message"), [
    ("train.learning_rte: {low: 0.001, high: 0.1}", r"unknown config key 'train\.learning_rte'"),
    ("train.batch_size: {low: 16.0, high: 128.0}",  # a float range for an integer setting
     r"(?s)'parameters\.train\.batch_size' may draw 16\.0000.*valid integer"),
    ("train.model: [text_cnn, text_lstm]", r"'parameters\.train\.model' may draw 'text_lstm'"),
    ("train.dropout: {low: 0.5, high: 1.5}", r"'parameters\.train\.dropout' may draw 1\.5"),
])
def test_a_tpe_space_the_configuration_refuses_fails_before_any_training(tmp_path, parameter,
                                                                         message):
    path = _write(tmp_path, f"method: tpe\ntrials: 2\nparameters:\n  {parameter}\n")
    with pytest.raises(ConfigError, match=message):
        run_sweep(load_config(), "/nonexistent/dataset", str(path))
    assert not (tmp_path / "sweep.study.db").exists()


def test_tpe_prunes_with_the_median_rule_unless_told_otherwise(tmp_path):
    spec = read_sweep(_write(tmp_path, "method: tpe\ntrials: 3\nparameters:\n"
                             "  train.learning_rate: {low: 0.0001, high: 0.01, log: true}\n"
                             "  train.epochs: {low: 1, high: 4}\n"))
    assert spec.pruner == "median" and spec.minutes is None
    assert spec.parameters["train.learning_rate"] == Range(low=0.0001, high=0.01, log=True)
    assert spec.parameters["train.epochs"].integers


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


# tpe: the search space in Optuna's terms, and a real study in SQLite driven by a fake training

SPACE = {"train.image_cnn.conv_filters": [[16], [32, 64], [32, 64, 128]],
         "train.model": ["text_cnn", "text_rnn"],
         "train.learning_rate": Range(low=0.0001, high=0.01, log=True),
         "train.epochs": Range(low=1, high=4),
         "train.dropout": Range(low=0, high=0.5)}


def test_the_search_space_in_optunas_terms_round_trips():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    found = distributions(SPACE)
    assert found["train.image_cnn.conv_filters"] == CategoricalDistribution(
        ["[16]", "[32, 64]", "[32, 64, 128]"])
    assert found["train.learning_rate"] == FloatDistribution(0.0001, 0.01, log=True)
    assert found["train.epochs"] == IntDistribution(1, 4)
    assert found["train.dropout"] == FloatDistribution(0, 0.5)  # one float end: floats
    params = {"train.image_cnn.conv_filters": "[32, 64, 128]", "train.model": '"text_rnn"',
              "train.learning_rate": 0.003, "train.epochs": 2, "train.dropout": 0.25}
    assert decode(SPACE, params) == {
        "train.image_cnn.conv_filters": [32, 64, 128], "train.model": "text_rnn",
        "train.learning_rate": 0.003, "train.epochs": 2, "train.dropout": 0.25}


def test_a_study_is_named_by_what_it_searches_and_stored_beside_the_sweep_file(tmp_path):
    sweep = tmp_path / "lr.yaml"
    url, name = study_location(sweep, {"data": "file:///d/v0001", "sweep": {"a": 1}})
    assert url == f"sqlite:///{tmp_path}/lr.study.db" and name.startswith("lr-")
    assert study_location(sweep, {"sweep": {"a": 1}, "data": "file:///d/v0001"})[1] == name
    assert study_location(sweep, {"data": "file:///d/v0002", "sweep": {"a": 1}})[1] != name


def _search(tmp_path, seed: int = 42, pruner: str = "median", name: str = "s") -> Search:
    return Search.open(f"sqlite:///{tmp_path}/s.study.db", name, "val_accuracy", pruner, seed,
                       SPACE, budget=12)


def _fake_training(ref: TrialRef, values: dict, accuracies: list[float],
                   prune: bool = True) -> TrainResult:
    """What rank 0 does: report each epoch, stop when the pruner says so."""
    reporter = Reporter(ref)
    for epoch, accuracy in enumerate(accuracies):
        if reporter.should_prune(epoch, accuracy) and prune:
            return _result(f"run{ref.trial_id}", accuracy, pruned_epoch=epoch + 1)
    return _result(f"run{ref.trial_id}", accuracies[-1])


def _result(run_id: str, accuracy: float, pruned_epoch: int | None = None) -> TrainResult:
    return TrainResult(run_id, "image_cnn", "file:///d/v0001", "f" * 64, accuracy, 1 - accuracy,
                       [10, 10], [0, 1], 0, 2, 2, [], None, pruned_epoch)


def test_a_seeded_study_asks_the_same_first_values(tmp_path):
    first = _search(tmp_path, name="first")
    again = _search(tmp_path, name="again")
    values = [first.ask()[1], first.ask()[1]]
    assert [again.ask()[1], again.ask()[1]] == values
    assert _search(tmp_path, seed=7, name="other").ask()[1] != values[0]
    assert values[0]["train.image_cnn.conv_filters"] in SPACE["train.image_cnn.conv_filters"]
    assert 0.0001 <= values[0]["train.learning_rate"] <= 0.01
    assert type(values[0]["train.epochs"]) is int and type(values[0]["train.dropout"]) is float


def test_an_interrupted_study_resumes_counting_and_fails_what_was_left_running(tmp_path):
    search = _search(tmp_path)
    told = []
    for accuracy in (0.5, 0.7):
        ref, values = search.ask()
        told.append((values, _result(f"run{ref.trial_id}", accuracy)))
        assert search.tell(told[-1][1]) == "complete"
    first_values = told[0][0]
    search.ask()  # the process dies while this trial trains
    resumed = _search(tmp_path)
    assert resumed.finished() == 2
    assert [t.state.name for t in resumed.study.trials] == ["COMPLETE", "COMPLETE", "FAIL"]
    ref, values = resumed.ask()
    assert values != first_values  # the resumed sampler does not redraw the first values
    assert resumed.tell(_result(f"run{ref.trial_id}", 0.6)) == "complete"
    assert resumed.finished() == 3
    assert resumed.completed()[:2] == told  # each result as it was told, for the best trial
    assert [r.val_accuracy for _, r in resumed.completed()] == [0.5, 0.7, 0.6]


def test_outcomes_pruned_failed_and_interrupted(tmp_path):
    search = _search(tmp_path)
    search.ask()
    assert search.tell(_result("pruned", 0.3, pruned_epoch=1)) == "pruned"
    search.ask()
    assert search.tell(_result("nan", math.nan)) == "failed"  # counts: it came to an outcome
    search.ask()
    assert search.tell(None) == "interrupted"  # its training raised: does not count
    assert search.finished() == 2 and search.completed() == []
    assert [t.state.name for t in search.study.trials] == ["PRUNED", "FAIL", "FAIL"]


def test_the_median_pruner_stops_a_trial_worse_than_earlier_ones_at_the_same_epoch(tmp_path):
    """Reports go through the worker's own connection to the stored study, as in training."""
    search = _search(tmp_path)
    for curve in ([0.6, 0.8], [0.5, 0.7]):  # the first two trials are never pruned
        ref, values = search.ask()
        assert search.tell(_fake_training(ref, values, curve)) == "complete"
    ref, values = search.ask()
    poor = _fake_training(ref, values, [0.1, 0.2])
    assert poor.pruned_epoch == 1 and search.tell(poor) == "pruned"
    ref, values = search.ask()
    assert _fake_training(ref, values, [0.7, 0.9]).pruned_epoch is None
    assert search.study.trials[2].intermediate_values == {0: 0.1}


def test_no_pruner_never_prunes(tmp_path):
    search = _search(tmp_path, pruner="none")
    for curve in ([0.6, 0.8], [0.5, 0.7], [0.1, 0.2]):
        ref, values = search.ask()
        assert search.tell(_fake_training(ref, values, curve)) == "complete"


def test_a_study_rank_0_cannot_open_is_named(tmp_path):
    ref = TrialRef("sqlite:////nonexistent/folder/s.study.db", "s", 1, "val_accuracy", "median")
    with pytest.raises(StudyUnreachableError, match="study s in sqlite:////nonexistent"):
        Reporter(ref)


# tpe through run_sweep: a real MLflow store and study; training and registration stubbed

class _Stubs:
    """Each training takes the next of ``outcomes`` (an accuracy, or an exception it raises)
    and 40 s of the sweep's clock, on a real run nested under the sweep's."""

    def __init__(self, cfg, monkeypatch) -> None:
        from pipeline import sweep
        from pipeline.tracking import runs
        from pipeline.tracking.registry import ModelRef
        from pipeline.tracking.tracker import Tracker

        self.tracker, self.outcomes, self.clock, self.registered = (
            Tracker.from_config(cfg.mlflow), [], 0.0, [])

        def train(trial_cfg, data, parent_run_id=None, trial=None):
            self.clock += 40
            outcome = self.outcomes.pop(0)
            if isinstance(outcome, BaseException):
                raise outcome
            run_id = runs.create_run(self.tracker, "train", "stub", parent_run_id=parent_run_id)
            return _result(run_id, outcome)

        def register(cfg, data, result, tags):
            self.registered.append(result.run_id)
            return ModelRef("digits-image_cnn", str(len(self.registered)))

        monkeypatch.setattr(sweep, "train", train)
        monkeypatch.setattr(sweep, "register_challenger", register)
        monkeypatch.setattr(sweep, "monotonic", lambda: self.clock)
        monkeypatch.setattr(sweep, "open_version", lambda url: ("file:///d/v0001", None))
        monkeypatch.setattr(sweep, "choose_model", lambda requested, manifest: "image_cnn")
        monkeypatch.setattr(sweep, "check_registered_name", lambda *args: None)


def test_a_tpe_sweep_resumes_where_an_interrupted_one_stopped(tmp_path, monkeypatch):
    from tests.conftest import make_config

    cfg = make_config(tmp_path)
    stubs = _Stubs(cfg, monkeypatch)
    path = _write(tmp_path, "method: tpe\ntrials: 3\nparameters:\n"
                            "  train.learning_rate: {low: 0.0001, high: 0.01, log: true}\n")
    stubs.outcomes = [0.9, KeyboardInterrupt()]
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, "/data/d", str(path))
    assert stubs.registered == []

    stubs.outcomes = [0.7, 0.6, 0.99]
    result = run_sweep(cfg, "/data/d", str(path))
    assert [r.val_accuracy for _, r in result.trials] == [0.7, 0.6]  # the third of 3 is a retry
    assert stubs.outcomes == [0.99]
    assert result.best.val_accuracy == 0.9 and result.best not in [r for _, r in result.trials]
    assert stubs.registered == [result.best.run_id]  # the first invocation's trial
    client = stubs.tracker.client
    parent = client.get_run(result.parent_run_id)
    assert client.get_run(parent.data.tags["sweep.resumed_from"]).info.status == "FAILED"
    assert parent.data.tags["sweep.best_run_id"] == result.best.run_id
    assert parent.data.params["sweep.study"] == result.study_name
    assert result.study_storage == f"sqlite:///{tmp_path}/sweep.study.db"

    again = run_sweep(cfg, "/data/d", str(path))  # the budget is spent
    assert again.trials == [] and again.model_version == result.model_version
    assert stubs.registered == [result.best.run_id]  # registered once


def test_no_tpe_trial_starts_after_its_minutes(tmp_path, monkeypatch):
    from tests.conftest import make_config

    cfg = make_config(tmp_path, "registry.register_trained=false")
    stubs = _Stubs(cfg, monkeypatch)
    stubs.outcomes = [0.5, 0.6, 0.7]
    path = _write(tmp_path, "method: tpe\ntrials: 5\nminutes: 1\npruner: none\nparameters:\n"
                            "  train.batch_size: {low: 16, high: 128}\n")
    result = run_sweep(cfg, "/data/d", str(path))
    assert len(result.trials) == 2 and result.model_version is None  # begun at 0 s and 40 s
    assert all(type(values["train.batch_size"]) is int for values, _ in result.trials)


@pytest.mark.parametrize(("budget", "random_first"), [(1, 3), (4, 3), (12, 6), (40, 10)])
def test_tpe_draws_half_the_budget_at_random_within_3_and_10(budget, random_first):
    from pipeline.train.study import startup_trials

    assert startup_trials(budget) == random_first
