"""Committing a dataset version: a reader sees a whole version or none, on any filesystem.

A version exists when its ``manifest.json``, written last as one object, exists; readers
refuse a folder without it. ``begin`` returns the ``Pending`` commit for the output's
filesystem:
- local disk and HDFS (atomic directory rename): the version is written into a hidden staging
  folder, its manifest last, then renamed into place by the write mode (``RenameCommit``);
- object stores (no rename): ``error`` and ``new-version`` first claim the output or the next
  ``vNNNN`` with a create-if-absent object (``.claim``; two writers never get the same name),
  write in place and the manifest last; ``overwrite`` writes a new generation folder
  ``g-<token>`` and then replaces the top ``manifest.json`` (one PUT), which points at it, so
  readers switch from the old data to the new at once (``ObjectCommit``).
What a crashed writer leaves (staging folders, claims without a manifest, generations no
manifest points at) is never read, and ``garbage`` lists it for ``pipeline datasets gc``.

An overwrite's swap (two renames) holds SIGINT and SIGTERM on the main thread until both are
done, so Ctrl-C or a scheduler's stop lands after it: the output path is never left empty, and a
finished version that was not swapped in is kept (``abort`` deletes only unfinished staging).
``guard_commits`` runs a check right before any commit of this thread (the retrain lock's).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pipeline import storage
from pipeline.datasets.manifest import LATEST_NAME, MANIFEST_NAME, is_version_name
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

WriteMode = Literal["error", "overwrite", "new-version"]


class OutputExistsError(PipelineError, FileExistsError):
    """The output already holds a dataset version and the mode says not to replace it."""


_GUARDS: ContextVar[tuple[Callable[[], None], ...]] = ContextVar("commit_guards", default=())


@contextmanager
def guard_commits(check: Callable[[], None]) -> Iterator[None]:
    """Call ``check`` right before each commit made in this context; what it raises stops the
    commit (the version is aborted). The retrain lock's holder commits nothing once lost."""
    token = _GUARDS.set((*_GUARDS.get(), check))
    try:
        yield
    finally:
        _GUARDS.reset(token)


def _run_guards() -> None:
    for check in _GUARDS.get():
        check()


HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM received in the block take effect when it ends (main thread only:
    Python runs signal handlers there, so no other thread's block can be interrupted)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    saved = {number: signal.signal(number, lambda n, _frame: received.append(n))
             for number in HELD_SIGNALS}
    try:
        yield
    finally:
        for number, handler in saved.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        for number in dict.fromkeys(received):
            signal.raise_signal(number)  # now: Ctrl-C raises, SIGTERM stops as it would have


def check_output(output_uri: str, mode: WriteMode) -> None:
    """Fail before any work when the output cannot be reached (a bucket, credentials) or
    exists and may not be replaced."""
    storage.check_location(output_uri)
    if mode == "error" and storage.exists(output_uri):
        raise OutputExistsError(
            f"{output_uri} already exists; pass --mode overwrite to replace it, or "
            "--mode new-version to add a version beside the existing ones")
    if mode == "new-version" and storage.exists(storage.join(output_uri, MANIFEST_NAME)):
        raise OutputExistsError(
            f"{output_uri} is a dataset version itself; --mode new-version needs a folder of "
            "versions")


def staging_uri(output_uri: str, mode: WriteMode) -> str:
    """A hidden folder beside (or, for new versions, inside) the output; no reader opens it."""
    token = uuid.uuid4().hex[:8]
    if mode == "new-version":
        return storage.join(output_uri, f".staging-{token}")
    parent, _, name = output_uri.rstrip("/").rpartition("/")
    return storage.join(parent, f".{name}.staging-{token}")


CLAIM_NAME = ".claim"
GENERATION_PREFIX = "g-"


def next_version_name(collection_uri: str) -> str:
    """One above every ``vNNNN`` there, committed or only claimed."""
    numbers = [int(n[1:]) for n in storage.list_names(collection_uri) if is_version_name(n)]
    return f"v{max(numbers, default=0) + 1:04d}"


def claim_next_version(staging: str, collection_uri: str, attempts: int = 20) -> str:
    """Rename ``staging`` to the next free ``vNNNN``; a concurrent job that took the number
    first makes us try the next one."""
    for _ in range(attempts):
        target = storage.join(collection_uri, next_version_name(collection_uri))
        if storage.exists(target):
            continue
        try:
            storage.rename(staging, target)
        except OSError:
            if storage.exists(storage.join(staging, MANIFEST_NAME)):
                continue  # someone else took the name between our check and our rename
            raise
        return target
    raise OSError(f"no free version name in {collection_uri} after {attempts} attempts")


def commit(staging: str, output_uri: str, mode: WriteMode) -> str:
    """Move the finished version into place; a reader sees a whole version or none.

    Returns the URI of the committed version.
    """
    if mode == "new-version":
        target = claim_next_version(staging, output_uri)
        pointer = storage.join(output_uri, f".{LATEST_NAME}.{uuid.uuid4().hex[:8]}")
        storage.write_text(pointer, target.rsplit("/", 1)[1] + "\n")
        storage.rename(pointer, storage.join(output_uri, LATEST_NAME))
    elif storage.exists(output_uri):
        check_output(output_uri, mode)
        parent, _, name = output_uri.rpartition("/")
        # not a ".staging-" name: the previous version must not look safe to delete
        previous = storage.join(parent, f".{name}.previous-{uuid.uuid4().hex[:8]}")
        with signals_held():  # an interrupt between the renames would leave no output
            storage.rename(output_uri, previous)
            try:
                storage.rename(staging, output_uri)
            except BaseException:
                storage.rename(previous, output_uri)  # put the old version back
                raise
        storage.delete_dir(previous)
        target = output_uri
    else:
        storage.rename(staging, output_uri)
        target = output_uri
    log.info("committed dataset version %s", target)
    return target


class Pending(Protocol):
    """A version being written: its data goes under ``data_uri``; ``finish`` commits it with
    its manifest and returns the version's URI; ``abort`` removes what was written."""

    data_uri: str

    def finish(self, manifest_json: str) -> str: ...

    def abort(self) -> None: ...


@dataclass
class RenameCommit:
    """Written aside in a hidden staging folder, then renamed into place (local disk, HDFS)."""

    output_uri: str
    mode: WriteMode
    marker: str = MANIFEST_NAME  # the object whose presence commits: a manifest, or _SUCCESS
    data_uri: str = ""
    finished: bool = False  # the marker is written: the staging folder is a whole version

    def __post_init__(self) -> None:
        self.data_uri = staging_uri(self.output_uri, self.mode)
        storage.make_dirs(self.data_uri)

    def finish(self, manifest_json: str) -> str:
        _run_guards()
        storage.write_text(storage.join(self.data_uri, self.marker), manifest_json)
        self.finished = True
        return commit(self.data_uri, self.output_uri, self.mode)

    def abort(self) -> None:
        """Remove the staging folder, unless it holds a finished version the commit did not
        move into place (an interrupt or a failed rename): that is kept, and said."""
        if self.finished and storage.exists(self.data_uri):
            log.warning("kept the finished version at %s: it was not committed to %s; rename it "
                        "into place to keep it, or let pipeline datasets gc remove it",
                        self.data_uri, self.output_uri)
            return
        storage.delete_dir(self.data_uri)


@dataclass
class ObjectCommit:
    """Written in place on an object store, committed by one last object (see the module)."""

    output_uri: str
    mode: WriteMode
    marker: str = MANIFEST_NAME
    data_uri: str = ""
    claim: str | None = None
    replaced: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mode == "overwrite":
            self.data_uri = storage.join(self.output_uri,
                                         f"{GENERATION_PREFIX}{uuid.uuid4().hex[:12]}")
            self.replaced = _replaced_entries(self.output_uri)
        elif self.mode == "new-version":
            self.data_uri = _claim_version_name(self.output_uri)
            self.claim = storage.join(self.data_uri, CLAIM_NAME)
        else:
            self.claim = storage.join(self.output_uri, CLAIM_NAME)
            if not storage.write_new(self.claim, _claim_text()):
                raise OutputExistsError(f"{self.output_uri} is being written by another job")
            self.data_uri = self.output_uri

    def finish(self, manifest_json: str) -> str:
        _run_guards()
        storage.write_text(storage.join(self.data_uri, self.marker), manifest_json)
        if self.mode == "overwrite":  # the switch: one PUT of the top manifest
            pointer = {**json.loads(manifest_json), "data": self.data_uri.rsplit("/", 1)[1]}
            storage.write_text(storage.join(self.output_uri, MANIFEST_NAME),
                               json.dumps(pointer, indent=2, sort_keys=True))
            for entry in self.replaced:
                _delete(entry)
        if self.claim is not None:
            storage.delete_file(self.claim)
        if self.mode == "new-version":
            storage.write_text(storage.join(self.output_uri, LATEST_NAME),
                               self.data_uri.rsplit("/", 1)[1] + "\n")
        target = self.data_uri if self.mode == "new-version" else self.output_uri
        log.info("committed dataset version %s", target)
        return target

    def abort(self) -> None:
        storage.delete_dir(self.data_uri)
        if self.claim is not None:
            storage.delete_file(self.claim)


def begin(output_uri: str, mode: WriteMode) -> Pending:
    """The commit protocol for ``output_uri``'s filesystem, after checking the mode allows it."""
    check_output(output_uri, mode)
    if storage.is_object_store(output_uri):
        return ObjectCommit(output_uri, mode)
    return RenameCommit(output_uri, mode)


SUCCESS_NAME = "_SUCCESS"  # Spark's marker of a complete output; Parquet readers skip it


class ObjectStoreOverwriteError(PipelineError, ValueError):
    """A plain folder of Parquet files cannot be replaced atomically on an object store."""

    exit_code = 2


def begin_table(output_uri: str, mode: WriteMode) -> Pending:
    """A folder of Parquet files any reader opens (predictions), committed like a version but
    marked by ``_SUCCESS`` instead of a manifest: written aside and renamed on local disk and
    HDFS (an overwrite keeps the previous output until the swap); claimed, written in place and
    marked last on object stores, where ``overwrite`` is refused: readers would see a mix."""
    check_output(output_uri, mode)
    if not storage.is_object_store(output_uri):
        return RenameCommit(output_uri, mode, SUCCESS_NAME)
    if mode != "error":
        raise ObjectStoreOverwriteError(
            f"--mode {mode}: {output_uri} is on an object store, where a folder of Parquet files "
            "cannot be replaced at once; write to a new output (e.g. a dated prefix)")
    return ObjectCommit(output_uri, mode, SUCCESS_NAME)


def _claim_text() -> str:
    return json.dumps({"claimed_at": time.time(), "token": uuid.uuid4().hex})


def _claim_version_name(collection_uri: str, attempts: int = 20) -> str:
    """The next free ``vNNNN``, claimed with a create-if-absent object."""
    for _ in range(attempts):
        target = storage.join(collection_uri, next_version_name(collection_uri))
        if storage.write_new(storage.join(target, CLAIM_NAME), _claim_text()):
            return target
    raise OSError(f"no free version name in {collection_uri} after {attempts} attempts")


def _replaced_entries(output_uri: str) -> list[str]:
    """What an overwrite removes once its manifest is in place: the generation the current
    manifest points at, or the splits and files of a version written in place before."""
    names = storage.list_names(output_uri)
    try:
        current = json.loads(storage.read_text(storage.join(output_uri, MANIFEST_NAME)))
    except FileNotFoundError:
        return []
    if current.get("data"):
        return [storage.join(output_uri, current["data"])]
    return [storage.join(output_uri, n) for n in names
            if n != MANIFEST_NAME and not n.startswith(GENERATION_PREFIX)]


def _delete(uri: str) -> None:
    storage.delete_dir(uri)
    storage.delete_file(uri)


@dataclass(frozen=True)
class Garbage:
    """Something a crashed or concurrent writer left that no reader opens."""

    uri: str
    why: str
    age_s: float  # since its newest file was written


def _staging_why(uri: str) -> str:
    if any(storage.exists(storage.join(uri, marker)) for marker in (MANIFEST_NAME, SUCCESS_NAME)):
        return "a finished version whose commit was interrupted (rename it into place to keep it)"
    return "staged by a writer that did not finish"


def _garbage_inside(output_uri: str) -> list[tuple[str, str]]:
    """(name, why) of the uncommitted entries inside an output or a folder of versions."""
    names = storage.list_names(output_uri)
    found = []
    try:
        current = json.loads(storage.read_text(storage.join(output_uri, MANIFEST_NAME)))
    except FileNotFoundError:
        current = None
    for name in names:
        if name.startswith(".staging-"):
            found.append((name, _staging_why(storage.join(output_uri, name))))
        elif name.startswith(f".{LATEST_NAME}."):
            found.append((name, "staged by a writer that did not finish"))
        elif is_version_name(name) and not storage.exists(
                storage.join(output_uri, name, MANIFEST_NAME)):
            found.append((name, "claimed or written, never committed (no manifest.json)"))
        elif name.startswith(GENERATION_PREFIX) and (current or {}).get("data") != name:
            found.append((name, "a generation no manifest.json points at"))
        elif name == CLAIM_NAME and current is None:
            found.append((name, "an output claimed by a writer that did not finish"))
    return found


def garbage(output_uri: str) -> list[Garbage]:
    """What writers left in and beside ``output_uri`` that no reader opens, for
    ``pipeline datasets gc``."""
    parent, _, name = output_uri.rstrip("/").rpartition("/")
    entries = [(storage.join(output_uri, n), why) for n, why in _garbage_inside(output_uri)]
    for sibling in storage.list_names(parent):
        if sibling.startswith((f".{name}.staging-", f".{name}.previous-")):
            why = (_staging_why(storage.join(parent, sibling)) if ".staging-" in sibling else
                   "a replaced version an interrupted overwrite left aside")
            entries.append((storage.join(parent, sibling), why))
    return [Garbage(uri, why, storage.age_s(uri)) for uri, why in entries]


def delete_garbage(found: list[Garbage], older_than_s: float) -> list[Garbage]:
    """Delete the entries untouched for ``older_than_s`` (a live writer keeps writing, so its
    files stay young); returns what was deleted."""
    deleted = [item for item in found if item.age_s >= older_than_s]
    for item in deleted:
        _delete(item.uri)
    return deleted
