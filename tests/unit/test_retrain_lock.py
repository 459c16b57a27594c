"""The retrain lock on local storage: one holder, clear refusals, stale locks taken over."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from pipeline.config import ConfigError
from pipeline.retrain.lock import (
    LOCK_NAME,
    Holder,
    LockHeldError,
    LockLostError,
    RetrainLock,
    is_stale,
)


def _plant(folder, holder: Holder) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_NAME).write_text(json.dumps(holder.__dict__))


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_second_holder_is_refused_until_the_first_releases(tmp_path):
    first = RetrainLock(str(tmp_path), stale_after_s=600)
    first.acquire()
    with pytest.raises(LockHeldError, match=r"another retrain is running .*\(pid \d+"):
        RetrainLock(str(tmp_path), stale_after_s=600).acquire()
    first.release()
    assert not (tmp_path / LOCK_NAME).exists()
    with RetrainLock(str(tmp_path), stale_after_s=600):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["host"] == socket.gethostname()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temp files left


def test_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path):
    now = time.time()
    _plant(tmp_path, Holder("crashed", socket.gethostname(), _dead_pid(), now, now))
    with RetrainLock(str(tmp_path), stale_after_s=600) as lock:
        held = json.loads((tmp_path / LOCK_NAME).read_text())
        assert held["token"] == lock.holder.token


def test_lock_of_another_host_waits_for_its_heartbeat_to_age(tmp_path):
    now = time.time()
    _plant(tmp_path, Holder("remote", "some-other-node", 4242, now - 50, now - 50))
    with pytest.raises(LockHeldError, match="some-other-node"):
        RetrainLock(str(tmp_path), stale_after_s=600).acquire()
    _plant(tmp_path, Holder("remote", "some-other-node", 4242, now - 5000, now - 4000))
    with RetrainLock(str(tmp_path), stale_after_s=600) as lock:
        assert json.loads((tmp_path / LOCK_NAME).read_text())["token"] == lock.holder.token


def test_unreadable_lock_is_stale_and_heartbeat_refreshes(tmp_path):
    tmp_path.joinpath(LOCK_NAME).write_text("{half a lock")
    with RetrainLock(str(tmp_path), stale_after_s=600, heartbeat_s=0.2) as lock:
        first = json.loads((tmp_path / LOCK_NAME).read_text())["heartbeat_at"]
        time.sleep(0.7)
        later = json.loads((tmp_path / LOCK_NAME).read_text())
        assert later["token"] == lock.holder.token
        assert later["heartbeat_at"] > first


def test_is_stale_by_heartbeat_age():
    alive = Holder("t", "elsewhere", 1, 0.0, 1000.0)
    assert not is_stale(alive, stale_after_s=60, now=1030.0)
    assert is_stale(alive, stale_after_s=60, now=1061.0)


def test_a_holder_whose_lock_was_taken_over_stops_at_the_next_check(tmp_path):
    with RetrainLock(str(tmp_path), stale_after_s=600, heartbeat_s=0.1) as lock:
        lock.check()  # still ours
        now = time.time()
        _plant(tmp_path, Holder("usurper", "other-node", 7, now, now))
        time.sleep(0.5)
        with pytest.raises(LockLostError, match="took over"):
            lock.check()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["token"] == "usurper"  # not ours


@pytest.mark.parametrize("where", ["hdfs://namenode/pipeline/versions", "s3://bucket/versions",
                                   "s3a://bucket/versions"])
def test_storage_without_atomic_create_is_refused_naming_the_key(where):
    with pytest.raises(ConfigError, match=r"retrain\.lock_dir"):
        RetrainLock(where, stale_after_s=600)


def _wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.time() + timeout_s
    while not condition() and time.time() < deadline:
        time.sleep(0.02)


def test_a_heartbeat_that_cannot_be_written_marks_the_lock_lost(tmp_path, monkeypatch):
    from pipeline import storage

    real = storage.write_text

    def write_text(uri: str, text: str) -> None:
        if f"{LOCK_NAME}." in uri and lock._beat is not None:  # the heartbeat's temp file
            raise PermissionError(13, "injected: read-only storage", uri)
        real(uri, text)

    lock = RetrainLock(str(tmp_path), stale_after_s=0.4, heartbeat_s=0.05)
    monkeypatch.setattr(storage, "write_text", write_text)
    with lock:
        _wait_for(lambda: not lock._beat.is_alive())
        assert not lock._beat.is_alive()  # stopped, and said why:
        with pytest.raises(LockLostError, match=r"heartbeat could not be written.*read-only"):
            lock.check()
        # the lock itself is untouched: nobody may take it before it goes stale
        assert json.loads((tmp_path / LOCK_NAME).read_text())["token"] == lock.holder.token
    assert LockLostError.exit_code == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == []


class _MovesFail:
    """A local filesystem whose moves (renames) fail, everything else working."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def move(self, src: str, dst: str) -> None:
        raise OSError("injected: rename failed")

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def test_a_replace_that_keeps_failing_never_leaves_the_lock_deleted(tmp_path, monkeypatch):
    from pipeline import storage

    real = storage.resolve
    with RetrainLock(str(tmp_path), stale_after_s=600, heartbeat_s=0.05) as lock:
        monkeypatch.setattr(storage, "resolve",
                            lambda uri: (_MovesFail(real(uri)[0]), real(uri)[1]))
        for _ in range(10):  # beats whose replace fails, twice and more
            time.sleep(0.05)
            assert json.loads((tmp_path / LOCK_NAME).read_text())["token"] == lock.holder.token
        lock.check()  # a storage hiccup shorter than stale_after_s / 2 is not a loss
        assert lock._beat.is_alive()
        monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # temps removed, lock released


def test_a_holder_that_lost_its_lock_commits_no_dataset_version(tmp_path):
    from pipeline.datasets import commit
    from pipeline.storage import to_uri

    versions = tmp_path / "versions"
    with RetrainLock(str(tmp_path / "locks"), stale_after_s=600, heartbeat_s=0.05) as lock:
        pending = commit.begin(to_uri(versions), "new-version")
        now = time.time()
        _plant(tmp_path / "locks", Holder("usurper", "other-node", 7, now, now))
        _wait_for(lock._lost.is_set)
        with commit.guard_commits(lock.check), pytest.raises(LockLostError, match="took over"):
            pending.finish("{}")
        pending.abort()
        assert sorted(p.name for p in versions.iterdir()) == []  # no vNNNN, no staging
