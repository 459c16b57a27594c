"""One retrain at a time per dataset folder: a lock file on a local or NFS path.

Taking the lock is one atomic step that fails when the file exists: a hard link (atomic on local
filesystems and NFS). Object stores and HDFS through pyarrow have no such step (a move replaces
the target), so the lock refuses them: put ``retrain.lock_dir`` on a path every host that runs
retrains sees. The holder rewrites a heartbeat while it works, so a lock left by a crash is
taken over without manual clean-up: at once when its process is gone from this host, otherwise
once the heartbeat is older than ``stale_after_s``. A holder that loses its lock stops before
its next side effect (``check``): when another retrain took it over, or when its heartbeat could
not be written for ``stale_after_s / 2`` (storage errors: others may soon see it stale). The
heartbeat replaces the lock file by one rename and never deletes it, so a failing replace leaves
the previous heartbeat in place, never no lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from urllib.parse import urlparse

from pipeline import storage
from pipeline.config import ConfigError
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

LOCK_NAME = ".retrain.lock"


class LockHeldError(PipelineError, RuntimeError):
    """Another retrain holds the lock; this one did nothing."""

    exit_code = 75  # EX_TEMPFAIL: schedulers treat it as a skip


class LockLostError(PipelineError, RuntimeError):
    """Our lock was taken over (we looked stale) or its heartbeat kept failing: we stop before
    the next side effect; the next retrain finishes the work."""

    exit_code = 5  # a concurrent change stopped the job; nothing was overwritten


@dataclass(frozen=True)
class Holder:
    token: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float

    def describe(self) -> str:
        return (f"pid {self.pid} on {self.host}, started "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.started_at))}, "
                f"last heartbeat {time.time() - self.heartbeat_at:.0f} s ago")


def _local_path(uri: str) -> str:
    """The path of a ``file://`` URI or plain path; other schemes cannot hold the lock."""
    if urlparse(uri).scheme not in ("", "file"):
        raise ConfigError(f"config key 'retrain.lock_dir': {uri} cannot hold the retrain lock "
                          "(no atomic create-if-absent on this storage); set it to a local or "
                          "NFS path every host that runs retrains sees")
    return urlparse(storage.to_uri(uri)).path


def _create_exclusive(temp_uri: str, lock_uri: str) -> bool:
    """Put the file at ``temp_uri`` in place as ``lock_uri`` unless that exists (atomically)."""
    try:
        os.link(_local_path(temp_uri), _local_path(lock_uri))
    except FileExistsError:
        return False
    return True


def _replace(temp_uri: str, lock_uri: str) -> None:
    """Move a new heartbeat over the lock with one rename (atomic on local disks and NFS): on
    failure the old lock stays whole. Never delete-then-move (``storage.replace_file``'s
    fallback), which would leave no lock while its holder runs when the second move fails."""
    filesystem, temp_path = storage.resolve(temp_uri)
    filesystem.move(temp_path, storage.resolve(lock_uri)[1])


def _read(lock_uri: str) -> Holder | None:
    try:
        return Holder(**json.loads(storage.read_text(lock_uri)))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):  # half-written by a crash: treat as stale
        return Holder("unreadable", "", 0, 0.0, 0.0)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(holder: Holder, stale_after_s: float, now: float | None = None) -> bool:
    """The holder crashed: its process is gone from this host, or it stopped heartbeating."""
    now = time.time() if now is None else now
    if holder.host == socket.gethostname() and holder.pid and not _process_alive(holder.pid):
        return True
    return now - holder.heartbeat_at > stale_after_s


class RetrainLock:
    """``with RetrainLock(folder, stale_after_s):`` holds the lock or raises ``LockHeldError``."""

    def __init__(self, folder_uri: str, stale_after_s: float, heartbeat_s: float = 30.0) -> None:
        _local_path(folder_uri)  # refuse storage that cannot hold a lock, before any work
        self.uri = storage.join(storage.to_uri(folder_uri), LOCK_NAME)
        self.folder_uri = storage.to_uri(folder_uri)
        self.stale_after_s, self.heartbeat_s = stale_after_s, heartbeat_s
        self.holder = Holder(uuid.uuid4().hex, socket.gethostname(), os.getpid(), time.time(),
                             time.time())
        self._stop, self._lost = threading.Event(), threading.Event()
        self._lost_why = ""
        self._beat: threading.Thread | None = None

    def _write_temp(self, holder: Holder) -> str:
        temp = storage.join(self.folder_uri, f"{LOCK_NAME}.{holder.token}.{uuid.uuid4().hex[:6]}")
        storage.write_text(temp, json.dumps(asdict(holder)))
        return temp

    def _delete(self, uri: str) -> None:
        filesystem, path = storage.resolve(uri)
        with contextlib.suppress(FileNotFoundError):
            filesystem.delete_file(path)

    def _take_over(self, stale: Holder) -> None:
        """Move a stale lock aside; only one of several racing retrains can move it."""
        aside = f"{self.uri}.stale-{self.holder.token}"
        try:
            storage.rename(self.uri, aside)
        except OSError:
            return  # someone else moved it first
        moved = _read(aside)
        if moved is not None and moved.token != stale.token:  # a fresh lock: put it back
            _create_exclusive(aside, self.uri)
        else:
            log.warning("took over the lock of a retrain that stopped (%s)", stale.describe())
        self._delete(aside)

    def acquire(self) -> None:
        storage.make_dirs(self.folder_uri)
        for _ in range(3):
            temp = self._write_temp(self.holder)
            try:
                if _create_exclusive(temp, self.uri):
                    self._start_heartbeat()
                    return
            finally:
                self._delete(temp)
            current = _read(self.uri)
            if current is None:
                continue  # released meanwhile
            if current.token == self.holder.token:  # NFS may say EEXIST after linking
                self._start_heartbeat()
                return
            if not is_stale(current, self.stale_after_s):
                raise LockHeldError(
                    f"another retrain is running on {self.folder_uri} ({current.describe()}); "
                    f"nothing done. Its lock is {self.uri}")
            self._take_over(current)
        raise LockHeldError(f"could not take the lock {self.uri}: other retrains keep taking it")

    def _start_heartbeat(self) -> None:
        self._beat = threading.Thread(target=self._heartbeat, daemon=True,
                                      name="retrain-lock-heartbeat")
        self._beat.start()

    def _heartbeat(self) -> None:
        """Refresh the heartbeat every ``heartbeat_s``; any failure is logged, and marks the
        lock lost once nothing could be written for ``stale_after_s / 2`` (or at once when it
        is not a storage error): the thread never dies silently."""
        written = time.time()
        while not self._stop.wait(self.heartbeat_s):
            try:
                if not self._beat_once():
                    return
                written = time.time()
            except Exception as exc:  # any failure must reach the holder, none kills the thread
                age = time.time() - written
                log.warning("could not refresh the retrain lock %s: %s", self.uri, exc)
                if not isinstance(exc, OSError) or age >= self.stale_after_s / 2:
                    self._mark_lost(f"its heartbeat could not be written for {age:.0f} s "
                                    f"({type(exc).__name__}: {exc}); another retrain may take "
                                    "it over")
                    return

    def _beat_once(self) -> bool:
        """One heartbeat; False when the lock was taken over (marked lost)."""
        current = _read(self.uri)
        if current is None:  # moved aside for a moment by a retrain checking it: not lost
            return True
        if current.token != self.holder.token:
            self._mark_lost(f"another retrain took over ({current.describe()}; this one "
                            "looked stale)")
            return False
        temp = self._write_temp(Holder(**{**asdict(self.holder), "heartbeat_at": time.time()}))
        try:
            _replace(temp, self.uri)
        except BaseException:
            with contextlib.suppress(OSError):
                self._delete(temp)
            raise
        return True

    def _mark_lost(self, why: str) -> None:
        log.error("the retrain lock %s is lost: %s", self.uri, why)
        self._lost_why = why
        self._lost.set()

    def check(self) -> None:
        """Raise ``LockLostError`` when the lock was taken over or its heartbeat kept failing."""
        if self._lost.is_set():
            raise LockLostError(f"lost the retrain lock {self.uri}: {self._lost_why}; stopping "
                                "before the next step (the next retrain finishes the work)")

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        try:
            current = _read(self.uri)
            if current is not None and current.token == self.holder.token:
                self._delete(self.uri)
        except OSError as exc:  # never hide the error that ended the holder's work
            log.warning("could not remove the retrain lock %s (%s); it goes stale after "
                        "%d s", self.uri, exc, self.stale_after_s)

    def __enter__(self) -> RetrainLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()
