"""Large tables of text read in pieces, so that no Python worker holds a whole file: JSONL and
CSV files in byte ranges cut at line starts, Parquet files by row group. Plain Python over the
storage layer; ``text_job`` runs each piece in its own Spark task.

JSONL: a file larger than ``range_bytes`` (at most ``SPLIT_BYTES``, less when the input would
give each core fewer than four tasks) is cut into ranges of about that size. A first pass
(one task per range) moves each cut to the next line start and counts the newlines in the
range, so that the driver knows every range's first line number exactly; it also checks that
the range is strict UTF-8 and holds more than whitespace. Only when the whole file is UTF-8
(a UTF-16/32 byte-order mark, or a single bad byte, is not) is it read in ranges: cut at a
newline, UTF-8 text decodes piece by piece exactly as it decodes whole, so every row, line
number and rejection is the one ``text_records.file_rows`` gives for the whole file. Any other
file is read whole, in one task, as a smaller file is.

CSV: the same ranges and first pass, which also learns, for each range, whether the csv reader
ends it inside a quoted field when it starts it outside one and when it starts it inside one
(``rows.csv_ends_quoted``: a quote opens a field only at a field's start, so the state at a line
start is "between records" or "inside a quoted field"), and counts its line ends as the reader
counts them ("\\r\\n", "\\r" or "\\n"). The driver follows the state from the file's start: a
range that starts inside a quoted field (a field holding a newline across the cut) is merged
into the one before, so every range starts at a record boundary and parses exactly as that part
of the whole file. The first range also reads the header, which every later range is given; a
header without the wanted columns is the file's one ``bad_header`` record, and a header that
cannot be read (or does not end in the first range) sends the file to be read whole.

Parquet: the driver reads the footers (row groups and their row counts); a task reads one row
group with ``ParquetFile.read_row_group`` (or a slice of its rows, when the groups are fewer than
the cores: ``row_slices``). Rows are named as Spark's ``_metadata`` names them:
``source`` the file's URI (``spark_file_path``), ``line`` the 1-based row index in the file.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import groupby

import pyarrow.parquet as pq

from pipeline import storage
from pipeline.datasets.reasons import Reason
from pipeline.errors import first_line
from pipeline.ingest import sniff
from pipeline.ingest.rows import (
    HeaderError,
    RowFormat,
    csv_ends_quoted,
    csv_has_row,
    csv_header,
    csv_line_ends,
)
from pipeline.ingest.text_records import (
    RawDocument,
    TextRecord,
    bad_header,
    no_rows,
    range_rows,
)

SPLIT_BYTES = 64 << 20  # the largest range of a JSONL or CSV file read in ranges
MIN_SPLIT_BYTES = 1 << 20  # the least a range is cut to, to give every core several tasks
TASKS_PER_CORE = 4  # ranges or row-group slices per core: a core that finishes early takes more
SEEK_CHUNK = 64 << 10  # bytes read at a time while looking for the end of a line
ReadAt = Callable[[int, int], bytes]  # (offset, length) -> the bytes there


@contextmanager
def open_file(uri: str) -> Iterator[ReadAt]:
    """Random access to one file through the storage layer (ranged GETs on S3)."""
    filesystem, path = storage.resolve(uri)
    with filesystem.open_input_file(path) as handle:
        yield lambda offset, length: handle.read_at(length, offset)


def range_bytes(total: int, cores: int, largest: int = SPLIT_BYTES) -> int:
    """The size of the ranges that ``total`` bytes of JSONL or CSV files are cut into (files
    larger than it are read in ranges): ``TASKS_PER_CORE`` per core, within ``MIN_SPLIT_BYTES``
    and ``largest`` (Spark's own rule for file splits, with more tasks per core)."""
    return min(largest, max(MIN_SPLIT_BYTES, -(-total // (TASKS_PER_CORE * max(1, cores)))))


def nominal_ranges(size: int, split_bytes: int = SPLIT_BYTES) -> list[tuple[int, int]]:
    """``[start, end)`` pieces of equal length, at most ``split_bytes``, covering ``size``."""
    count = max(1, -(-size // split_bytes))
    step = -(-size // count) if size else 1
    return [(start, min(size, start + step)) for start in range(0, max(size, 1), step)]


def line_start(read_at: ReadAt, pos: int, size: int, chunk: int = SEEK_CHUNK) -> int:
    """The first line start at or after ``pos``: ``pos`` itself when it is 0 or follows a
    newline, else just past the next newline (``size`` when there is none)."""
    if pos <= 0:
        return 0
    at = pos - 1
    while at < size:
        data = read_at(at, min(chunk, size - at))
        if not data:
            break
        found = data.find(b"\n")
        if found >= 0:
            return at + found + 1
        at += len(data)
    return size


@dataclass(frozen=True)
class CsvScan:
    """What the first pass learns of a CSV range: its line ends as the csv reader counts them,
    whether it ends inside a quoted field when it starts outside one and when it starts inside
    one, whether a record (not the header) is in it, and (the first range only) the file's
    header, when it can be read and ends there."""

    lines: int
    ends_quoted: tuple[bool, bool]
    header: tuple[str, ...] | None = None
    has_row: bool = True  # a record in it (after the header, in the first range)


@dataclass(frozen=True)
class RangeScan:
    """What the first pass learns of one range of a file: where it really starts and ends
    (line starts), the newlines in it, whether it is strict UTF-8 with more than whitespace,
    what ``sniff`` needs to tell binary content (the first range's signature, the characters
    and control characters without NULs, whether any other character is visible), or why it
    could not be read."""

    source: str
    start: int
    end: int
    newlines: int = 0
    utf8: bool = True
    has_text: bool = False
    error: str | None = None
    signature: str | None = None
    chars: int = 0
    controls: int = 0
    visible: bool = False
    csv: CsvScan | None = None


def scan_range(source: str, read_at: ReadAt, size: int, start: int, end: int,
               fmt: RowFormat = "jsonl") -> RangeScan:
    """Cut ``[start, end)`` at line starts and look at its bytes (the first pass)."""
    cut_start = line_start(read_at, start, size)
    cut_end = size if end >= size else line_start(read_at, end, size)
    data = read_at(cut_start, cut_end - cut_start) if cut_end > cut_start else b""
    try:
        text = _range_text(data, cut_start)
    except UnicodeDecodeError:
        return RangeScan(source, cut_start, cut_end, data.count(b"\n"), utf8=False)
    controls, has_text = sniff.count_controls(text), bool(text.strip())
    return RangeScan(source, cut_start, cut_end, data.count(b"\n"), has_text=has_text,
                     signature=sniff.signature(data) if cut_start == 0 else None,
                     chars=len(text), controls=controls,
                     visible=sniff.has_visible(text) if controls else has_text,
                     csv=_scan_csv(text, cut_start, cut_end >= size) if fmt == "csv" else None)


def _range_text(data: bytes, start: int) -> str:
    """A range's bytes as the whole file's text holds them: strict UTF-8, the byte-order mark
    at the file's start dropped (as ``text.decode_text`` drops it), NULs removed."""
    text = data.decode("utf-8")
    if start == 0:
        text = text.removeprefix("\ufeff")
    return text.replace("\x00", "")


def _scan_csv(text: str, start: int, last: bool) -> CsvScan:
    """The CSV facts of one range's text (``last``: it ends the file)."""
    body = text.removeprefix("\ufeff") if start == 0 else text  # as csv_rows drops one more
    lines = csv_line_ends(text)
    ends_quoted = (csv_ends_quoted(body, False), csv_ends_quoted(body, True))
    if start != 0:  # any line but an empty one is a record for the csv reader
        return CsvScan(lines, ends_quoted, has_row=bool(text.strip("\r\n")))
    try:
        header, header_lines = csv_header(text)
    except HeaderError:
        return CsvScan(lines, ends_quoted)
    # the header ends in this range unless it is the record left open at the range's end
    whole = last or not ends_quoted[0] or header_lines < lines
    if not whole:
        return CsvScan(lines, ends_quoted)
    return CsvScan(lines, ends_quoted, tuple(header), csv_has_row(text))


def scan_file_range(source: str, size: int, start: int, end: int, fmt: RowFormat = "jsonl"
                    ) -> RangeScan:
    """``scan_range`` of a file by URI; a failed read is the scan's ``error``."""
    try:
        with open_file(source) as read_at:
            return scan_range(source, read_at, size, start, end, fmt)
    except Exception as exc:  # the file's outcome (unreadable), not the job's
        return RangeScan(source, start, end, error=f"cannot be read: {type(exc).__name__}: "
                                                   f"{first_line(exc)}")


@dataclass(frozen=True)
class ByteRange:
    """A piece of a JSONL or CSV file to parse: bytes ``[start, end)``, starting on line
    ``first_line``; for a CSV range after the first, the file's ``header``."""

    source: str
    start: int
    end: int
    first_line: int
    fmt: RowFormat = "jsonl"
    header: tuple[str, ...] | None = None


@dataclass(frozen=True)
class RangePlan:
    """How to read the large JSONL and CSV files: in ranges, whole (not all UTF-8; a CSV
    header that cannot be read in the first range), or not at all (a record for the whole
    file: nothing but whitespace, binary, unreadable, a CSV header without the columns)."""

    ranges: list[ByteRange]
    whole: list[str]
    records: list[TextRecord]


def plan_ranges(scans: Sequence[RangeScan], columns: Sequence[str] = ()) -> RangePlan:
    """The first pass's scans (any order) -> what to read; ``columns``: those a CSV header
    must have."""
    plan = RangePlan([], [], [])
    ordered = sorted(scans, key=lambda scan: (scan.source, scan.start))
    for source, group in groupby(ordered, key=lambda scan: scan.source):
        found = _plan_file(source, list(group), columns)
        plan.ranges.extend(found.ranges)
        plan.whole.extend(found.whole)
        plan.records.extend(found.records)
    return plan


def _plan_file(source: str, parts: list[RangeScan], columns: Sequence[str]) -> RangePlan:
    """What to read of one file, from its scans in order."""
    failed = next((scan.error for scan in parts if scan.error), None)
    if failed is not None:
        return RangePlan([], [], [TextRecord.rejected(source, None, Reason.UNREADABLE, failed)])
    if not all(scan.utf8 for scan in parts):
        return RangePlan([], [source], [])
    if (binary := _binary(parts)) is not None:
        return RangePlan([], [], [TextRecord.rejected(source, None, Reason.BINARY_CONTENT,
                                                      f"the whole file: {binary}")])
    if not any(scan.has_text for scan in parts):
        return RangePlan([], [], [TextRecord.rejected(
            source, None, Reason.EMPTY_TEXT,
            "the whole file: only whitespace or NUL characters")])
    if parts[0].csv is not None:
        return _plan_csv(source, parts, columns)
    ranges, line = [], 1  # each range's first line is one more than the newlines before it
    for scan in parts:
        if scan.end > scan.start:
            ranges.append(ByteRange(source, scan.start, scan.end, line))
        line += scan.newlines
    return RangePlan(ranges, [], [])


def _plan_csv(source: str, parts: list[RangeScan], columns: Sequence[str]) -> RangePlan:
    """The ranges of a CSV file, each starting at a record boundary: follow the quoted state
    from the file's start and merge a range that starts inside a quoted field into the one
    before; its first line is one more than the line ends before it."""
    header = parts[0].csv.header
    if header is None:  # unreadable, or longer than the first range: as a smaller file is
        return RangePlan([], [source], [])
    missing = [column for column in columns if column not in header]
    if missing:
        return RangePlan([], [], [bad_header(source, header, missing)])
    if not any(scan.csv.has_row for scan in parts):
        return RangePlan([], [], [no_rows(source, "csv")])
    pieces: list[list[int]] = []  # [start, end, first line]
    quoted, line = False, 1
    for scan in parts:
        if scan.end > scan.start:
            if quoted:
                pieces[-1][1] = scan.end
            else:
                pieces.append([scan.start, scan.end, line])
        quoted = scan.csv.ends_quoted[quoted]
        line += scan.csv.lines
    return RangePlan([ByteRange(source, start, end, first, "csv", header if start else None)
                      for start, end, first in pieces], [], [])


def _binary(parts: Sequence[RangeScan]) -> str | None:
    """Why a file's ranges are not text, by ``sniff``'s rule over all of them (as
    ``text.decode_text`` judges the whole file), or None."""
    found = next((scan.signature for scan in parts if scan.signature), None)
    if found is not None:
        return sniff.describe_signature(found)
    chars, controls = sum(scan.chars for scan in parts), sum(scan.controls for scan in parts)
    if sniff.too_many_controls(controls, chars) and any(scan.visible for scan in parts):
        return sniff.describe_controls(controls, chars)
    return None


def read_range(piece: ByteRange, text_col: str, label_col: str
               ) -> Iterator[RawDocument | TextRecord]:
    """The rows of one planned range (the second pass), as ``file_rows`` gives them."""
    try:
        with open_file(piece.source) as read_at:
            data = read_at(piece.start, piece.end - piece.start)
    except Exception as exc:  # gone since the first pass: its lines are not known
        yield TextRecord.rejected(piece.source, piece.first_line, Reason.UNREADABLE,
                                  f"bytes {piece.start}-{piece.end} cannot be read: "
                                  f"{type(exc).__name__}: {first_line(exc)}")
        return
    text = _range_text(data, piece.start)
    try:
        yield from range_rows(piece.source, text, piece.first_line, text_col, label_col,
                              piece.fmt, piece.header)
    except HeaderError as bad:  # the first range's header, checked by the first pass
        yield TextRecord.rejected(piece.source, 1, Reason.BAD_HEADER, f"{bad}")


# what java.net.URI leaves unquoted in a path (Spark names files with Hadoop's Path.toUri)
_URI_PATH_SAFE = frozenset(string.ascii_letters + string.digits + "-_.!~*'()" + ":@&=+$,;/")


def spark_file_path(uri: str) -> str:
    """``uri`` as Spark's ``_metadata.file_path`` spells it: the path part quoted as
    java.net.URI quotes it (a space is ``%20``; other non-ASCII letters stay)."""
    if uri.startswith("file:") and not uri.startswith("file://"):
        head, path = "file:", uri[len("file:"):]
    else:
        scheme_end = uri.find("://") + 3
        slash = uri.find("/", scheme_end)
        head, path = (uri, "") if slash < 0 else (uri[:slash], uri[slash:])
    quoted = []
    for char in path:
        if char in _URI_PATH_SAFE or (char >= "\x80" and unicodedata.category(char)
                                      not in ("Zs", "Zl", "Zp", "Cc")):
            quoted.append(char)
        else:
            quoted.append("".join(f"%{byte:02X}" for byte in char.encode("utf-8")))
    return head + "".join(quoted)


@dataclass(frozen=True)
class RowGroup:
    """One row group of a Parquet file, or a slice of one: its rows are lines ``first_line`` to
    ``first_line + rows - 1`` of ``source``, from row ``skip`` of the group on."""

    source: str  # the file's URI as listed, read through the storage layer
    index: int
    first_line: int
    rows: int
    skip: int = 0


def row_slices(groups: list[RowGroup], at_least: int) -> list[RowGroup]:
    """``groups`` cut into slices of rows when they are fewer than ``at_least`` (the cores), so
    that every core gets work even from a file of one row group; each slice reads its whole
    group and keeps its rows, so groups are sliced only when cores would be idle."""
    if len(groups) >= at_least:
        return groups
    pieces = -(-at_least // max(1, len(groups)))
    sliced = []
    for group in groups:
        step = max(1, -(-group.rows // pieces))
        sliced += [replace(group, first_line=group.first_line + skip, skip=group.skip + skip,
                           rows=min(step, group.rows - skip))
                   for skip in range(0, group.rows, step)] or [group]
    return sliced


@dataclass(frozen=True)
class ParquetFooter:
    """What a Parquet file's footer says: its row groups and column names."""

    groups: list[RowGroup]
    columns: list[str]


def read_footer(uri: str) -> ParquetFooter:
    """The row groups and columns of one Parquet file (a few small reads); raises OSError or
    ArrowInvalid when it is no Parquet file."""
    filesystem, path = storage.resolve(uri)
    with filesystem.open_input_file(path) as handle:
        parquet = pq.ParquetFile(handle)
        meta, columns = parquet.metadata, parquet.schema_arrow.names
    groups, line = [], 1
    for index in range(meta.num_row_groups):
        rows = meta.row_group(index).num_rows
        groups.append(RowGroup(uri, index, line, rows))
        line += rows
    return ParquetFooter(groups, list(columns))


def read_row_group(group: RowGroup, text_col: str, label_col: str
                   ) -> Iterator[RawDocument | TextRecord]:
    """The rows of one row group (or slice), ``(source, line, text, label)``; a column the
    file lacks reads as null (as Spark reads it). A group that cannot be read gives each of its
    rows an ``unreadable`` record."""
    name = spark_file_path(group.source)
    try:
        filesystem, path = storage.resolve(group.source)
        with filesystem.open_input_file(path) as handle:
            parquet = pq.ParquetFile(handle)
            present = [c for c in dict.fromkeys((text_col, label_col))
                       if c in parquet.schema_arrow.names]
            table = parquet.read_row_group(group.index, columns=present).slice(group.skip,
                                                                               group.rows)
    except Exception as exc:  # the rows' outcome (unreadable), not the job's
        detail = (f"row group {group.index} cannot be read: {type(exc).__name__}: "
                  f"{first_line(exc)}")
        for offset in range(group.rows):
            yield TextRecord.rejected(name, group.first_line + offset, Reason.UNREADABLE,
                                      detail)
        return
    nulls = [None] * table.num_rows
    texts = table.column(text_col).to_pylist() if text_col in present else nulls
    labels = table.column(label_col).to_pylist() if label_col in present else nulls
    for offset, (text, label) in enumerate(zip(texts, labels, strict=True)):
        yield RawDocument(name, group.first_line + offset, text, label)
