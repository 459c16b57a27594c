"""Transfer learning and class imbalance, per layer and per class: which weights move from a
source model, which layers freeze, what weight each class gets."""

import numpy as np
import pytest

from pipeline.config import ConfigError, load_config
from pipeline.train.balance import acceptance, class_weights
from pipeline.train.model import build_model
from pipeline.train.transfer import TransferError, copy_matching_weights, layers_to_freeze
from tests.unit.test_model import _manifest

LABELS = {"cat": 0, "dog": 1, "eel": 2}


def test_balanced_weights_make_every_class_weigh_the_same_in_total():
    counts = {"cat": 80, "dog": 15, "eel": 5}
    weights = class_weights("balanced", counts, LABELS)
    totals = [weights[LABELS[label]] * n for label, n in counts.items()]
    assert totals == pytest.approx([100 / 3] * 3)
    assert class_weights("none", counts, LABELS) is None


def test_named_weights_default_to_one_and_unknown_labels_are_refused():
    assert class_weights({"eel": 4.0}, {}, LABELS) == {0: 1.0, 1: 1.0, 2: 4.0}
    with pytest.raises(ConfigError, match=r"'train\.class_weight': cow is not a label"):
        class_weights({"cow": 2.0}, {}, LABELS)


def test_balanced_sampling_keeps_the_rarest_class_whole():
    assert acceptance({"cat": 80, "dog": 20, "eel": 0}, LABELS) == [0.25, 1.0, 1.0]


def _model(classes: int, *overrides: str):
    import tensorflow as tf

    tf.keras.backend.clear_session()  # fresh automatic names, as in a worker process
    return build_model("image_cnn", _manifest("images", classes),
                       load_config(overrides=overrides).train)


def test_matching_layers_transfer_and_another_head_starts_fresh():
    """Paired by place (the n-th Conv2D), not by Keras's process-dependent names."""
    source = _model(10)
    _model(3)  # shifts the automatic names of the next model
    target = _model(3)
    transferred, fresh = copy_matching_weights(target, source)
    assert transferred == [layer.name for layer in target.layers[1:]
                           if layer.weights and layer.name != "probabilities"]
    assert fresh == ["probabilities"]
    for theirs, ours in zip(source.layers[:-1], target.layers[:-1], strict=True):
        for a, b in zip(theirs.get_weights(), ours.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    assert target.get_layer("probabilities").get_weights()[0].shape == (128, 3)


def test_other_shapes_are_not_transferred():
    """Narrower convolutions: both differ (the second reads 16 channels, not 32); the dense
    layers still fit (the same flattened size)."""
    source = _model(3, "train.image_cnn.conv_filters=[16, 64]")
    assert copy_matching_weights(_model(3), source) == (["dense", "probabilities"],
                                                         ["conv2d", "conv2d_1"])


def test_freezing_names_layers_or_the_backbone():
    model = _model(3)
    assert [layer.name for layer in layers_to_freeze(model, ["backbone"])] == [
        "conv2d", "conv2d_1", "dense"]
    assert [layer.name for layer in layers_to_freeze(model, ["conv2d"])] == ["conv2d"]
    with pytest.raises(TransferError, match=r"'train\.freeze': conv9 is not a layer"):
        layers_to_freeze(model, ["conv9"])
