"""Learning-rate schedules (warm-up to rate x workers; constant, cosine, steps) and losses."""

import itertools
import math

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.train.optim import make_loss, make_optimizer, make_schedule

STEPS = 10  # per epoch


def _rates(name: str, *extra: str) -> list[float]:
    cfg = load_config(overrides=[f"train.schedule.name={name}", "train.epochs=6",
                                 "train.learning_rate=0.01", *extra]).train
    schedule = make_schedule(cfg, workers=4, steps_per_epoch=STEPS)
    return [float(schedule(step)) for step in range(6 * STEPS)]


def test_warm_up_is_linear_from_the_single_worker_rate_to_rate_times_workers():
    rates = _rates("constant")
    assert rates[0] == pytest.approx(0.01)
    assert rates[5] == pytest.approx(0.01 + 0.03 * 5 / STEPS)
    assert rates[STEPS:] == pytest.approx([0.04] * (5 * STEPS))


def test_no_warm_up_starts_at_the_scaled_rate():
    assert _rates("constant", "train.schedule.warmup_epochs=0")[0] == pytest.approx(0.04)


def test_cosine_decays_to_zero_at_the_last_epoch():
    rates = _rates("cosine")
    after = rates[STEPS:]
    assert after[0] == pytest.approx(0.04)
    assert all(a >= b for a, b in itertools.pairwise(after))
    done = (len(after) - 1) / (5 * STEPS)
    assert after[-1] == pytest.approx(0.04 * 0.5 * (1 + math.cos(math.pi * done)), abs=1e-7)


def test_step_schedule_multiplies_by_the_rate_every_n_epochs():
    rates = _rates("step", "train.schedule.decay_every_epochs=2", "train.schedule.decay_rate=0.5")
    assert rates[STEPS] == pytest.approx(0.04)
    assert rates[2 * STEPS] == pytest.approx(0.02)
    assert rates[4 * STEPS] == pytest.approx(0.01)


def test_schedule_survives_keras_serialisation_as_horovod_rewraps_optimisers():
    cfg = load_config(overrides=["train.optimizer=momentum"]).train
    optimizer = make_optimizer(cfg, make_schedule(cfg, workers=2, steps_per_epoch=STEPS))
    clone = type(optimizer).from_config(optimizer.get_config())
    assert clone.get_config()["momentum"] == pytest.approx(0.9)
    rate = clone.get_config()["learning_rate"]
    assert "WarmupSchedule" in rate["class_name"]
    assert rate == optimizer.get_config()["learning_rate"]


def test_binary_cross_entropy_on_two_softmax_columns_is_the_positive_class_log_loss():
    onehot = np.array([[0.0, 1.0], [1.0, 0.0]], "float32")
    probs = np.array([[0.2, 0.8], [0.3, 0.7]], "float32")
    expected = -(math.log(0.8) + math.log(0.3))
    assert float(make_loss("binary_crossentropy", summed=True)(onehot, probs)) == pytest.approx(
        expected, rel=1e-5)
    assert float(make_loss("mse", summed=True)(onehot, probs)) == pytest.approx(
        (0.04 + 0.04) / 2 + (0.49 + 0.49) / 2, rel=1e-5)
