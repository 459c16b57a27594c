"""The model ends training with the weights of its best epoch (``train.keep_best``), also when
that epoch came before a resume: a real Keras model and real TensorFlow checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from pipeline.train import checkpoints  # noqa: E402
from pipeline.train.callbacks import KeepBestEpoch  # noqa: E402


class _Validation:
    confusion = None


def _model():
    model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    return model


def _run_epochs(keep: KeepBestEpoch, model, validation, epochs: dict[int, float],
                monitor: str = "val_loss") -> None:
    """Each epoch sets every weight to the epoch number, then reports its metric."""
    for epoch, value in epochs.items():
        model.set_weights([np.full(w.shape, epoch, w.dtype) for w in model.get_weights()])
        validation.confusion = np.array([[epoch]])
        keep.on_epoch_end(epoch, {monitor: value})


def _weights_are(model, epoch: int) -> bool:
    return all((w == epoch).all() for w in model.get_weights())


def test_a_rising_validation_loss_keeps_the_earlier_epoch(tmp_path):
    model, validation = _model(), _Validation()
    keep = KeepBestEpoch("val_loss", tmp_path.as_uri(), {}, validation)
    keep.set_model(model)
    _run_epochs(keep, model, validation, {0: 0.9, 1: 0.55, 2: float("nan"), 3: 0.8, 4: 1.17})
    keep.on_train_end()
    assert _weights_are(model, 1)
    assert keep.best["epoch"] == 1 and keep.best["logs"]["val_loss"] == 0.55
    assert keep.confusion.item() == 1  # the report is the kept epoch's


def test_accuracy_is_kept_at_its_highest(tmp_path):
    model, validation = _model(), _Validation()
    keep = KeepBestEpoch("val_accuracy", tmp_path.as_uri(), {}, validation)
    keep.set_model(model)
    _run_epochs(keep, model, validation, {0: 0.7, 1: 0.9, 2: 0.8}, "val_accuracy")
    keep.on_train_end()
    assert _weights_are(model, 1)


def test_a_best_epoch_before_a_resume_comes_back_from_its_checkpoint(tmp_path):
    root = tmp_path.as_uri()
    model, validation = _model(), _Validation()
    first = KeepBestEpoch("val_loss", root, {}, validation)
    first.set_model(model)
    for epoch, loss in {0: 0.9, 1: 0.5, 2: 0.6, 3: 0.7}.items():  # the job dies after epoch 3
        _run_epochs(first, model, validation, {epoch: loss})
        checkpoints.save(checkpoints.Checkpoint(root, epoch, {"val_loss": loss}, {},
                                                first.best), model, model.optimizer,
                         validation.confusion)
    point = checkpoints.latest(root)
    assert point.best["epoch"] == 1
    assert {p.name for p in tmp_path.iterdir()} >= {"epoch-0001", "epoch-0002", "epoch-0003"}
    assert not (tmp_path / "epoch-0000").exists()  # neither newest nor best

    resumed_model = _model()
    resumed = KeepBestEpoch("val_loss", root, point.best, validation)
    resumed.set_model(resumed_model)
    _run_epochs(resumed, resumed_model, validation, {4: 0.8})
    resumed.on_train_end()
    assert _weights_are(resumed_model, 1)
    assert resumed.confusion.item() == 1
