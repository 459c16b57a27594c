"""Model builders follow the train knobs: depth, width, cell, dropout, L2, augmentation."""

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.datasets.manifest import Manifest, SplitInfo
from pipeline.train.model import build_model


def _manifest(kind: str, classes: int = 3) -> Manifest:
    feature = ({"name": "image", "shape": [28, 28]} if kind == "images"
               else {"name": "token_ids", "shape": [16]})
    config = {"images": {"encoding": "png"}} if kind == "images" else {}
    return Manifest(kind=kind, source="test", created_at="now", config=config,
                    label_map={str(i): i for i in range(classes)}, discovered=10,
                    splits={"train": SplitInfo(10, 1, {})}, quarantine={}, schema=[feature],
                    fingerprint="f", extra={"vocab_size": 50})


def _types(model) -> list[str]:
    return [type(layer).__name__ for layer in model.layers]


def test_the_seed_cnn_is_the_default():
    model = build_model("image_cnn", _manifest("images"), load_config().train)
    assert _types(model) == ["Rescaling", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D",
                             "Flatten", "Dense", "Dense"]
    assert [layer.filters for layer in model.layers if hasattr(layer, "filters")] == [32, 64]
    assert model.output_shape == (None, 3)


def test_depth_width_activation_dropout_and_l2_are_configurable():
    cfg = load_config(overrides=["train.image_cnn.conv_filters=[8,16,16]",
                                 "train.image_cnn.dense_units=20", "train.activation=tanh",
                                 "train.dropout=0.25", "train.l2=0.001"]).train
    model = build_model("image_cnn", _manifest("images"), cfg)
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [8, 16, 16]
    assert {c.activation.__name__ for c in convs} == {"tanh"}
    assert model.layers[-2].rate == pytest.approx(0.25)
    assert len(model.losses) == 5  # one L2 penalty per kernel: 3 conv + 2 dense


def test_augmentation_is_random_in_training_and_the_identity_at_inference():
    cfg = load_config(overrides=["train.augment.flip=horizontal", "train.augment.shift=0.1",
                                 "train.augment.rotation=15"]).train
    model = build_model("image_cnn", _manifest("images"), cfg)
    augmenting = model.layers[:3]
    assert _types(model)[:3] == ["RandomFlip", "RandomTranslation", "RandomRotation"]
    image = np.random.default_rng(0).uniform(0, 255, (4, 28, 28, 1)).astype("float32")
    out = image
    for layer in augmenting:
        out = layer(out, training=False)
    np.testing.assert_array_equal(np.asarray(out), image)
    trained = image
    for layer in augmenting:
        trained = layer(trained, training=True)
    assert not np.allclose(np.asarray(trained), image)


@pytest.mark.parametrize(("cell", "bidirectional", "expected"), [
    ("gru", True, "Bidirectional"), ("lstm", False, "LSTM")])
def test_text_rnn_cells(cell, bidirectional, expected):
    cfg = load_config(overrides=[f"train.text_rnn.cell={cell}",
                                 f"train.text_rnn.bidirectional={bidirectional}"]).train
    model = build_model("text_rnn", _manifest("text", classes=2), cfg)
    assert _types(model)[1] == expected
    assert model.layers[0].input_dim == 50  # vocabulary size from the manifest
    probs = model(np.array([[2, 3, 4] + [0] * 13], "int32")).numpy()
    assert probs.shape == (1, 2)
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)


def test_text_cnn_uses_its_knobs():
    cfg = load_config(overrides=["train.text_cnn.filters=12", "train.text_cnn.kernel_size=3"]
                      ).train
    model = build_model("text_cnn", _manifest("text"), cfg)
    conv = next(layer for layer in model.layers if type(layer).__name__ == "Conv1D")
    assert (conv.filters, conv.kernel_size) == (12, (3,))
