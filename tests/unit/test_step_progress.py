"""``StepProgress``: rank 0's step, throughput and ETA lines during an epoch."""

from __future__ import annotations

import logging
import time

from pipeline.train import callbacks


def test_step_progress_logs_the_epoch_step_throughput_and_eta(monkeypatch, caplog):
    clock = iter([100.0, 102.0, 104.0])  # epoch start; after step 1 and step 2
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    caplog.set_level(logging.INFO, logger="pipeline.train.callbacks")
    progress = callbacks.StepProgress(epochs=3, steps=4, global_batch=64, every_s=0.0)
    assert progress._supports_tf_logs  # Keras hands it the logs without a sync per step
    progress.on_epoch_begin(1)
    progress.on_train_batch_end(0)
    progress.on_train_batch_end(1)
    progress.on_epoch_end(1, {})
    assert caplog.messages == [
        "epoch 2/3: 1/4 steps (25%), 32 samples/s, epoch ETA 0:06",
        "epoch 2/3: 2/4 steps (50%), 32 samples/s, epoch ETA 0:04"]


def test_step_progress_is_quiet_between_its_lines(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="pipeline.train.callbacks")
    progress = callbacks.StepProgress(epochs=1, steps=1000, global_batch=8)  # every 10 s
    progress.on_epoch_begin(0)
    for step in range(1000):
        progress.on_train_batch_end(step)
    assert caplog.messages == []
