"""Which raw inputs exist and what label each carries: folder layouts and listing files.

Pure functions over paths and text; the Spark adapter (``pipeline.spark.listing``)
supplies the file lists, ``rows`` parses listing files.
Every input comes out as a ``Discovered``: a candidate with a label, or a rejection.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlparse

from pipeline.datasets.reasons import Reason
from pipeline.ingest.labels import label_from_path
from pipeline.ingest.rejection import Rejected
from pipeline.ingest.rows import HeaderError, Row, RowFormat, parse_rows

ListingFormat = RowFormat


@dataclass(frozen=True)
class Discovered:
    """One input: ``label`` set for a candidate, ``reason`` and ``detail`` for a rejection."""

    path: str
    size: int
    label: str | None = None
    reason: Reason | None = None
    detail: str | None = None


def is_hidden(path: str, root: str) -> bool:
    """Hidden below ``root``: a name starting with '.' or '_', or an upload in progress
    (``*._COPYING_``): Spark's file readers skip these names."""
    relative = path[len(root.rstrip("/")) + 1:] if path.startswith(root) else path
    return any(part.startswith((".", "_")) or part.endswith("._COPYING_")
               for part in relative.split("/") if part)


def placement_problem(path: str, root: str, escapes_root: bool) -> tuple[Reason, str] | None:
    """Why a file is not read, judged from where it was found: a hidden name, or a symbolic
    link that resolves outside the input root (its bytes are never read)."""
    if is_hidden(path, root):
        return Reason.HIDDEN_FILE, ("names starting with '.' or '_', or ending '._COPYING_', "
                                    "are hidden; not read")
    if escapes_root:
        return Reason.SYMLINK_OUTSIDE_ROOT, "a symbolic link that resolves outside the input root"
    return None


def size_problem(size: int, max_bytes: int | None = None) -> tuple[Reason, str] | None:
    """Why a file is not read, judged from its listed size alone (before any read, so that a
    huge file never reaches a worker's memory): it is empty, or over ``max_bytes``."""
    if size == 0:
        return Reason.EMPTY_FILE, "the file has no bytes"
    if max_bytes is not None and size > max_bytes:
        return Reason.TOO_LARGE, (f"listed size {size} bytes is over ingest.max_file_bytes "
                                  f"({max_bytes}); not read")
    return None


def classify_folder_file(path: str, size: int, root: str, escapes_root: bool = False,
                         max_bytes: int | None = None) -> Discovered:
    """A file found under ``root`` in a ``ROOT/<label>/<file>`` layout; ``max_bytes``: the
    largest listed size read (``ingest.max_file_bytes``)."""
    if (problem := placement_problem(path, root, escapes_root)) is not None:
        return Discovered(path, size, None, *problem)
    try:
        label = label_from_path(path, root)
    except Rejected as rejected:
        return Discovered(path, size, reason=rejected.reason, detail=rejected.detail)
    if (problem := size_problem(size, max_bytes)) is not None:
        return Discovered(path, size, label, *problem)
    return Discovered(path, size, label)


def classify_data_file(path: str, size: int, root: str, escapes_root: bool = False,
                       max_bytes: int | None = None) -> Discovered:
    """A file of rows (CSV, JSONL, Parquet) under ``root``: its rows carry their own labels."""
    if (problem := placement_problem(path, root, escapes_root)) is not None:
        return Discovered(path, size, None, *problem)
    if (problem := size_problem(size, max_bytes)) is not None:
        return Discovered(path, size, None, *problem)
    return Discovered(path, size, label="")


def listing_format(uri: str) -> ListingFormat:
    """``.csv`` or ``.jsonl``/``.json``/``.ndjson`` by the listing file's extension."""
    name = uri.lower()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    raise Rejected(Reason.BAD_LISTING, f"{uri}: a listing must be .csv or .jsonl")


def resolve_path(entry: str, base_uri: str) -> str:
    """A listing's path: an absolute URI or path as is, else relative to the listing's folder."""
    if entry.startswith("file://"):
        return "file:" + posixpath.normpath(urlparse(entry).path)
    if "://" in entry or entry.startswith("file:"):
        return entry
    if entry.startswith("/"):
        return "file:" + posixpath.normpath(entry)
    base_path = urlparse(base_uri).path
    prefix = base_uri[: len(base_uri) - len(base_path)]
    return prefix + posixpath.normpath(posixpath.join(base_path, entry))


def _listing_rows(text: str, fmt: ListingFormat) -> Iterator[Row]:
    """(path, label) rows of a listing; a short CSV row lacks a label rather than being bad."""
    try:
        yield from parse_rows(text, fmt, ("path", "label"), pad_short=True)
    except HeaderError as bad:
        detail = (f"unreadable CSV header: {bad.cause}" if bad.cause is not None
                  else f"the CSV header lacks {', '.join(sorted(bad.missing))}")
        raise Rejected(Reason.BAD_LISTING, detail) from None


def parse_listing(text: str, fmt: ListingFormat, listing_uri: str) -> list[Discovered]:
    """Rows ``path,label`` of a CSV or JSONL listing. Malformed rows and repeated paths are
    rejections named ``<listing>:<line>`` or by path, so that every row is accounted for."""
    base = listing_uri.rsplit("/", 1)[0]
    seen: dict[str, int] = {}
    found: list[Discovered] = []
    for number, values, problem in _listing_rows(text, fmt):
        where = f"{listing_uri}:{number}"
        if values is None:
            found.append(Discovered(where, 0, reason=Reason.BAD_LISTING_ROW,
                                    detail=f"line {number}: {problem}"))
            continue
        path, label = values
        if not isinstance(path, str) or not path.strip():
            found.append(Discovered(where, 0, reason=Reason.BAD_LISTING_ROW,
                                    detail=f"line {number}: no path"))
            continue
        resolved = resolve_path(path.strip(), base)
        if resolved in seen:
            found.append(Discovered(f"{resolved} ({where})", 0, reason=Reason.DUPLICATE_ENTRY,
                                    detail=f"line {number} repeats line {seen[resolved]}"))
            continue
        seen[resolved] = number
        if label is None or not str(label).strip():
            found.append(Discovered(resolved, 0, reason=Reason.NO_LABEL,
                                    detail=f"line {number}: the label is empty"))
            continue
        found.append(Discovered(resolved, -1, str(label).strip()))
    return found
