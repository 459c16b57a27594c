"""What the raw input folder held when a dataset version was built, and what changed since.

A snapshot records every file's path, size, modification time and SHA-256. It travels inside the
dataset version (``inputs.json``), so "new since the last version" needs no side channel. Only
files whose size or time changed are read again: a file touched but not changed is not new.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from pyarrow import fs as pafs

from pipeline import storage
from pipeline.errors import InputError
from pipeline.redaction import redact

SNAPSHOT_NAME = "inputs.json"
CHUNK = 1 << 20


@dataclass(frozen=True)
class FileState:
    size: int
    mtime_ns: int
    sha256: str


Snapshot = dict[str, FileState]  # relative path -> state


@dataclass(frozen=True)
class Changes:
    new: list[str]
    changed: list[str]
    removed: list[str]

    @property
    def any(self) -> bool:
        return bool(self.new or self.changed or self.removed)

    def summary(self) -> str:
        return f"{len(self.new)} new, {len(self.changed)} changed, {len(self.removed)} removed"


def _sha256(filesystem: pafs.FileSystem, path: str) -> str:
    digest = hashlib.sha256()
    with filesystem.open_input_stream(path) as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _listing(source_uri: str) -> tuple[pafs.FileSystem, str, list[pafs.FileInfo]]:
    filesystem, root = storage.resolve(source_uri)
    info = filesystem.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"retrain input {source_uri} does not exist")
    if info.type == pafs.FileType.File:
        return filesystem, root.rsplit("/", 1)[0], [info]
    files = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    return filesystem, root, [f for f in files if f.type == pafs.FileType.File]


def take_snapshot(source_uri: str, previous: Snapshot | None = None) -> Snapshot:
    """Every file below ``source_uri``; hashes are reused from ``previous`` where size and
    modification time are unchanged."""
    filesystem, root, files = _listing(source_uri)
    previous = previous or {}
    snapshot: Snapshot = {}
    for info in files:
        relative = info.path[len(root.rstrip("/")) + 1:]
        size, mtime_ns = int(info.size), int(info.mtime_ns or 0)
        known = previous.get(relative)
        if known is not None and known.sha256 and (known.size, known.mtime_ns) == (size, mtime_ns):
            snapshot[relative] = known
            continue
        try:
            sha256 = _sha256(filesystem, info.path)
        except OSError:  # unreadable now: ingest quarantines it; read again next time
            sha256 = ""
        snapshot[relative] = FileState(size, mtime_ns, sha256)
    return dict(sorted(snapshot.items()))


def compare(previous: Snapshot | None, current: Snapshot) -> Changes:
    """Files added, changed in content, or gone since ``previous`` (None: all are new)."""
    previous = previous or {}
    new = [p for p in current if p not in previous]
    changed = [p for p, state in current.items()
               if p in previous and state.sha256 != previous[p].sha256]
    removed = [p for p in previous if p not in current]
    return Changes(new, changed, removed)


def to_json(source_uri: str, snapshot: Snapshot) -> str:
    """The snapshot as stored in a version: its ``source`` redacted (a signed URL's token or a
    password never lands in the dataset)."""
    files = {path: [s.size, s.mtime_ns, s.sha256] for path, s in snapshot.items()}
    return json.dumps({"source": redact(source_uri), "files": files}, indent=0, sort_keys=True)


def same_source(recorded: str, source_uri: str) -> bool:
    """Whether a snapshot's ``source`` names ``source_uri``: compared redacted, so a rotated
    token is the same input, and a snapshot an earlier release stored in clear still matches."""
    return redact(recorded) == redact(source_uri)


def from_json(text: str) -> tuple[str, Snapshot]:
    """(source URI, snapshot) from ``to_json``'s text; ``ValueError`` when it is not one."""
    try:
        data = json.loads(text)
        return data["source"], {path: FileState(int(size), int(mtime), sha)
                                for path, (size, mtime, sha) in data["files"].items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not an input snapshot ({exc})") from None


def read_snapshot(version_uri: str) -> tuple[str, Snapshot] | None:
    """The snapshot a dataset version was built from; None for versions built without one."""
    uri = storage.join(version_uri, SNAPSHOT_NAME)
    try:
        return from_json(storage.read_text(uri))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise InputError(f"{uri} is damaged: {exc}; delete it to treat every file as new") \
            from None
