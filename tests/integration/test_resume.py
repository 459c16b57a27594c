"""A worker killed mid-epoch ends the job naming its rank; --resume continues in the same run.
In elastic mode, the others train on without it, and it comes back."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import fresh_store
from tests.procs import Background, run_pipeline

# the killed-worker fixture and the resume test start up to four trainings
pytestmark = pytest.mark.timeout(1200)
EPOCHS = 3  # the kill comes right after the first checkpoint: two epochs are left


def _settings(tmp: Path) -> list[str]:
    return [f"mlflow.tracking_uri={fresh_store(tmp)}",
            f"mlflow.artifact_root={tmp / 'mlartifacts'}",
            f"train.checkpoint_dir={tmp / 'checkpoints'}", f"train.epochs={EPOCHS}"]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def _rank_pid(root: int, rank: int) -> int | None:
    """The pid of the Horovod worker with ``rank`` among the descendants of ``root``."""
    tree, todo = _children(), [root]
    while todo:
        pid = todo.pop()
        todo.extend(tree.get(pid, []))
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"HOROVOD_RANK={rank}".encode() in env:
            return pid
    return None


def _wait_for_checkpoint(root: Path, job: Background, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not list(root.glob("*/latest.json")):
        assert job.process.poll() is None, job.log.read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def killed(digits_dataset, tmp_path_factory):
    """Train, SIGKILL rank 1 after the first checkpoint, and return what the job reported."""
    tmp = tmp_path_factory.mktemp("resume")
    url = digits_dataset[0]
    job = Background(["train", "--data", url, *_settings(tmp)], tmp)
    _wait_for_checkpoint(tmp / "checkpoints", job)
    pid = _rank_pid(job.process.pid, 1)
    assert pid is not None, "rank 1 not found"
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    code, _, err = job.finish(timeout_s=120)  # bounded: a hang fails here
    return tmp, url, code, err, time.monotonic() - killed_at


def test_a_killed_worker_ends_the_job_naming_its_rank(killed):
    from mlflow.tracking import MlflowClient

    tmp, _, code, err, seconds = killed
    assert code == 1, err[-3000:]
    assert "worker rank 1 was killed by SIGKILL" in err
    run = MlflowClient(f"sqlite:///{tmp / 'mlruns.db'}").search_runs(["1"])[0]
    assert run.info.status == "FAILED"
    print(f"job ended {seconds:.1f}s after the kill")


def test_a_frozen_worker_ends_the_job_after_the_stall_timeout(digits_dataset, tmp_path):
    job = Background(["train", "--data", digits_dataset[0], *_settings(tmp_path),
                      "launch.stall_timeout_s=15"], tmp_path)
    _wait_for_checkpoint(tmp_path / "checkpoints", job)
    pid = _rank_pid(job.process.pid, 1)
    assert pid is not None, "rank 1 not found"
    os.kill(pid, signal.SIGSTOP)  # alive but silent: no exit code tells anyone
    code, _, err = job.finish(timeout_s=180)  # bounded: a hang fails here
    assert code == 1, err[-3000:]
    assert "Timed out waiting 15000ms" in err  # Gloo's timeout, set from launch.stall_timeout_s
    assert "Horovod training failed: worker rank 0 failed first" in err


def test_resume_continues_after_the_last_checkpoint_in_the_same_run(killed):
    """Also: a resume with other settings, or of a finished run, is refused."""
    from mlflow.tracking import MlflowClient

    tmp, url, *_ = killed
    (pointer,) = (tmp / "checkpoints").glob("*/latest.json")
    saved = json.loads(pointer.read_text())["epoch"]
    assert saved < EPOCHS - 1, "the kill came after the last epoch"
    run_id = pointer.parent.name
    changed = run_pipeline(["train", "--data", url, "--resume", "--run-id", run_id,
                            *_settings(tmp), "train.learning_rate=0.1"], tmp)
    assert changed.returncode == 1
    assert "different settings (train.learning_rate)" in changed.stderr

    done = run_pipeline(["train", "--data", url, "--resume", *_settings(tmp)], tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"epochs {saved + 2}-{EPOCHS} of {EPOCHS}" in done.stdout

    client = MlflowClient(f"sqlite:///{tmp / 'mlruns.db'}")
    (run,) = client.search_runs(["1"])  # the same run, no second one
    assert run.info.run_id == pointer.parent.name
    assert run.info.status == "FINISHED"
    for metric in ("val_accuracy", "loss", "learning_rate"):
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, metric))
        assert steps == list(range(EPOCHS)), (metric, steps)  # no gap, no repeat
    losses = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "loss")}
    assert losses[saved + 1] < losses[0]  # it continued from the trained weights, not from 0
    assert run.data.metrics["val_accuracy"] > 0.9

    again = run_pipeline(["train", "--data", url, "--resume", "--run-id", run_id,
                          *_settings(tmp)], tmp)
    assert again.returncode == 1
    assert f"run {run_id} finished; there is nothing to resume" in again.stderr


def test_elastic_training_goes_on_without_a_killed_worker_and_takes_it_back(digits_dataset,
                                                                           tmp_path):
    """Two "hosts" (two names of this machine, each with its own slot): rank 1 is killed
    after the first checkpoint; rank 0 goes on alone from the last committed epoch, the host
    is back after its cooldown and its new worker joins; one run holds every epoch once."""
    from mlflow.tracking import MlflowClient

    epochs = 10  # room for the new worker to start and join
    job = Background(["train", "--data", digits_dataset[0], *_settings(tmp_path),
                      f"train.epochs={epochs}", "train.keep_best=val_loss",
                      "launch.launcher=hosts", "launch.hosts=localhost:1,127.0.0.1:1",
                      "launch.elastic=true", "launch.host_cooldown_s=1"], tmp_path)
    _wait_for_checkpoint(tmp_path / "checkpoints", job)
    pid = _rank_pid(job.process.pid, 1)
    assert pid is not None, "rank 1 not found"
    os.kill(pid, signal.SIGKILL)
    code, _, err = job.finish(timeout_s=300)
    assert code == 0, err[-3000:]

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    (run,) = client.search_runs(["1"])
    assert run.info.status == "FINISHED"
    workers = [(m.step, int(m.value)) for m in sorted(
        client.get_metric_history(run.info.run_id, "workers"), key=lambda m: m.timestamp)]
    assert workers[0] == (0, 2) and workers[-1][1] == 2, workers
    assert any(n == 1 for _, n in workers), workers  # the survivor alone, then both again
    assert [s for s, _ in workers] == sorted(s for s, _ in workers), workers
    for metric in ("val_accuracy", "loss"):
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, metric))
        assert steps == list(range(epochs)), (metric, steps)  # every epoch once
    assert run.data.metrics["val_accuracy"] > 0.9
    assert client.search_logged_models([run.info.experiment_id],
                                       filter_string=f"source_run_id = '{run.info.run_id}' "
                                       "AND name = 'model'")
    print("workers by epoch:", workers)


def test_a_new_rank_0_writes_the_epoch_end_its_predecessor_lost(tmp_path):
    """Elastic mode: the ranks went back to a saved epoch whose checkpoint and metrics the
    rank 0 that trained it never wrote (it died during its writes); the new rank 0 writes
    them once, from the state, and does nothing when they are there."""
    from types import SimpleNamespace

    import tensorflow as tf

    from pipeline.config import load_config
    from pipeline.tracking.retry import Retrying
    from pipeline.tracking.tracker import Tracker
    from pipeline.train import checkpoints
    from pipeline.train.worker import write_lost_epoch_end

    tracker = Tracker.from_config(load_config(overrides=_settings(tmp_path)).mlflow)
    run_id = tracker.client.create_run(tracker.experiment_id).info.run_id
    model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    root = checkpoints.checkpoint_root(str(tmp_path / "checkpoints"), run_id)
    checkpoints.save(checkpoints.Checkpoint(root, 0, {"loss": 1.0}), model, model.optimizer)
    spec = SimpleNamespace(checkpoint_root=root, tracker=tracker, run_id=run_id)
    state = SimpleNamespace(epoch=2, logs={"loss": 0.5, "val_loss": 0.7}, best={},
                            early_stopping={"best": 0.7, "wait": 0})
    for _ in range(2):  # the second time, the epoch's writes are there: nothing is written
        write_lost_epoch_end(spec, state, model, Retrying())
    point = checkpoints.latest(root)
    assert (point.epoch, point.logs, point.early_stopping) == (1, state.logs,
                                                               state.early_stopping)
    history = tracker.client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(1, 0.5)]
