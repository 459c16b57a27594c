"""A tpe trial's epoch-end pruning inside training: rank 0 reports to the stored study, every
rank stops on rank 0's broadcast answer. A real Keras model and a real SQLite study; Horovod's
broadcast is a stand-in."""

from __future__ import annotations

import logging

import pytest

tf = pytest.importorskip("tensorflow")

from pipeline.train.callbacks import PruneAtEpochEnd  # noqa: E402
from pipeline.train.job import TrainResult  # noqa: E402
from pipeline.train.spec import TrialRef  # noqa: E402
from pipeline.train.study import Range, Reporter, Search  # noqa: E402

SPACE = {"train.learning_rate": Range(low=0.0001, high=0.01, log=True)}


class _Horovod:
    """``rank()`` and ``broadcast_object`` as horovod.tensorflow has them; the other ranks
    receive ``answer``, what rank 0 sent."""

    def __init__(self, rank: int, answer: bool = False) -> None:
        self._rank, self._answer = rank, answer
        self.sent: list[tuple[object, str]] = []

    def rank(self) -> int:
        return self._rank

    def broadcast_object(self, obj, root_rank=0, name=None):
        self.sent.append((obj, name))
        return obj if self._rank == root_rank else self._answer


def _model():
    model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    return model


def _third_trial(tmp_path) -> TrialRef:
    """A study whose first two trials completed, at 0.6 then 0.7 and at 0.8 then 0.9; a third
    asked."""
    search = Search.open(f"sqlite:///{tmp_path}/s.study.db", "s", "val_accuracy", "median", 1,
                         SPACE, budget=12)
    for accuracy in (0.7, 0.9):
        ref, _ = search.ask()
        reporter = Reporter(ref)
        reporter.should_prune(0, accuracy - 0.1)
        reporter.should_prune(1, accuracy)
        search.tell(TrainResult(f"run{accuracy}", "m", "d", "f", accuracy, 0.5, [1], [0], 0, 1,
                                None, [], None))
    return search.ask()[0]


def _epochs(callback: PruneAtEpochEnd, model, accuracies: list[float]) -> None:
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, accuracy in enumerate(accuracies):
        callback.on_epoch_end(epoch, {"val_accuracy": accuracy, "val_loss": 1.0})
        if model.stop_training:
            return


def test_rank_0_reports_and_every_rank_stops_on_its_answer(tmp_path):
    ref, model, hvd = _third_trial(tmp_path), _model(), _Horovod(0)
    pruning = PruneAtEpochEnd(ref, hvd)
    _epochs(pruning, model, [0.75, 0.76, 0.9])  # epoch 1 above its median 0.7, 2 below 0.8
    assert model.stop_training and pruning.pruned_epoch == 2
    assert hvd.sent == [(False, "prune_0"), (True, "prune_1")]

    other, model = _Horovod(1, answer=True), _model()
    unreachable = TrialRef("sqlite:////nonexistent/s.study.db", "s", 3, "val_accuracy", "median")
    pruning = PruneAtEpochEnd(unreachable, other)  # only rank 0 opens the study
    _epochs(pruning, model, [0.9])
    assert model.stop_training and pruning.pruned_epoch == 1 and other.sent == [(False, "prune_0")]


def test_a_study_rank_0_cannot_reach_prunes_nothing_and_says_so(caplog):
    ref = TrialRef("sqlite:////nonexistent/s.study.db", "s", 3, "val_accuracy", "median")
    model, pruning = _model(), PruneAtEpochEnd(ref, _Horovod(0))
    with caplog.at_level(logging.WARNING, logger="pipeline.train.worker"):
        _epochs(pruning, model, [0.1, 0.1])
    assert not model.stop_training and pruning.pruned_epoch is None
    assert "trial 3 is not pruned: study s in sqlite:////nonexistent" in caplog.text
