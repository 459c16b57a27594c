"""Which raw inputs exist and what label each carries: folder layouts and listing files.

Pure functions over paths and text; the Spark side (``listing``) supplies the file lists.
Every input comes out as a ``Discovered``: a candidate with a label, or a rejection.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlparse

from pipeline.ingest.labels import label_from_path
from pipeline.ingest.rejection import Rejected

ListingFormat = Literal["csv", "jsonl"]
csv.field_size_limit(2**31 - 1)  # an overlong field is a bad row, not a crash


@dataclass(frozen=True)
class Discovered:
    """One input: ``label`` set for a candidate, ``reason`` and ``detail`` for a rejection."""

    path: str
    size: int
    label: str | None = None
    reason: str | None = None
    detail: str | None = None


def is_hidden(path: str, root: str) -> bool:
    """Hidden below ``root``: a name starting with '.' or '_' (Spark's readers skip these)."""
    relative = path[len(root.rstrip("/")) + 1:] if path.startswith(root) else path
    return any(part.startswith((".", "_")) for part in relative.split("/") if part)


def classify_folder_file(path: str, size: int, root: str,
                         escapes_root: bool = False) -> Discovered:
    """A file found under ``root`` in a ``ROOT/<label>/<file>`` layout."""
    if is_hidden(path, root):
        return Discovered(path, size, reason="hidden_file",
                          detail="names starting with '.' or '_' are hidden; not read")
    if escapes_root:
        return Discovered(path, size, reason="symlink_outside_root",
                          detail="a symbolic link that resolves outside the input root")
    try:
        label = label_from_path(path, root)
    except Rejected as rejected:
        return Discovered(path, size, reason=rejected.reason, detail=rejected.detail)
    if size == 0:
        return Discovered(path, size, label, reason="empty_file", detail="the file has no bytes")
    return Discovered(path, size, label)


def classify_data_file(path: str, size: int, root: str) -> Discovered:
    """A file of rows (CSV, JSONL) under ``root``: its rows carry their own labels."""
    if is_hidden(path, root):
        return Discovered(path, size, reason="hidden_file",
                          detail="names starting with '.' or '_' are hidden; not read")
    if size == 0:
        return Discovered(path, size, reason="empty_file", detail="the file has no bytes")
    return Discovered(path, size, label="")


def listing_format(uri: str) -> ListingFormat:
    """``.csv`` or ``.jsonl``/``.json``/``.ndjson`` by the listing file's extension."""
    name = uri.lower()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    raise Rejected("bad_listing", f"{uri}: a listing must be .csv or .jsonl")


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


def _rows(text: str, fmt: ListingFormat):
    """(line number, dict or error message) for each data row of the listing."""
    text = text.removeprefix("\ufeff")  # a byte-order mark, as Excel writes
    if fmt == "jsonl":
        # lines end at "\n" only: JSON strings may hold U+2028 and the like
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, f"invalid JSON: {exc.msg}"
                continue
            except (ValueError, RecursionError) as exc:
                yield number, f"invalid JSON: {type(exc).__name__}"
                continue
            yield number, value if isinstance(value, dict) else "a JSON value that is not an object"
        return
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        fields = reader.fieldnames or []
    except csv.Error as exc:
        raise Rejected("bad_listing", f"unreadable CSV header: {exc}") from None
    missing = {"path", "label"} - set(fields)
    if missing:
        raise Rejected("bad_listing", f"the CSV header lacks {', '.join(sorted(missing))}")
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, f"unparseable CSV: {exc}"
        else:
            yield start, "more fields than the header" if None in row else row
        start = reader.line_num + 1


def parse_listing(text: str, fmt: ListingFormat, listing_uri: str) -> list[Discovered]:
    """Rows ``path,label`` of a CSV or JSONL listing. Malformed rows and repeated paths are
    rejections named ``<listing>:<line>`` or by path, so that every row is accounted for."""
    base = listing_uri.rsplit("/", 1)[0]
    seen: dict[str, int] = {}
    found: list[Discovered] = []
    for number, row in _rows(text, fmt):
        where = f"{listing_uri}:{number}"
        if isinstance(row, str):
            found.append(Discovered(where, 0, reason="bad_listing_row",
                                    detail=f"line {number}: {row}"))
            continue
        path, label = row.get("path"), row.get("label")
        if not isinstance(path, str) or not path.strip():
            found.append(Discovered(where, 0, reason="bad_listing_row",
                                    detail=f"line {number}: no path"))
            continue
        resolved = resolve_path(path.strip(), base)
        if resolved in seen:
            found.append(Discovered(f"{resolved} ({where})", 0, reason="duplicate_entry",
                                    detail=f"line {number} repeats line {seen[resolved]}"))
            continue
        seen[resolved] = number
        if label is None or not str(label).strip():
            found.append(Discovered(resolved, 0, reason="no_label",
                                    detail=f"line {number}: the label is empty"))
            continue
        found.append(Discovered(resolved, -1, str(label).strip()))
    return found
