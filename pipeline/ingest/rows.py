"""Rows of CSV and JSONL text: the one parser behind image listings and text rows.

Pure functions over decoded text. Every data row comes out as a ``Row``: the line it starts
on (1-based; a CSV header is line 1) and the values of the wanted columns, or the problem
that makes it malformed. What a problem means (a bad listing row, a malformed text row) is
the caller's to say. The rules, the same for every caller:

* a byte-order mark at the very start is dropped (Excel writes one);
* CSV: a header, then rows; quoted fields may hold commas, quotes and newlines; a blank line
  is no row; more fields than the header is a problem, and so are fewer unless
  ``pad_short`` (the missing fields are then None); a column named twice: the first counts;
  a header that is unreadable or lacks a wanted column raises ``HeaderError``;
* JSONL: one JSON object per line, lines end at "\\n" only (JSON strings may hold U+2028 and
  other characters ``str.splitlines`` would also break at), a trailing "\\r" is dropped,
  blank lines are skipped (``jsonl_blank_lines`` counts them: rows plus blank lines make the
  file's line count); bad JSON (huge numbers and deep nesting included) and values
  that are not objects are problems; a missing key's value is None.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Literal, NamedTuple

RowFormat = Literal["csv", "jsonl"]

# a 5 MB text field is data to judge (too_long), not a parse error
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class Row(NamedTuple):
    """One data row: ``values`` of the wanted columns (any JSON type), or its ``problem``."""

    line: int
    values: tuple[object, ...] | None
    problem: str | None = None


class HeaderError(ValueError):
    """A CSV header that cannot be read (``cause``) or lacks wanted columns (``missing``)."""

    def __init__(self, header: list[str], missing: list[str], cause: str | None = None) -> None:
        super().__init__(cause or f"the header {header} lacks {', '.join(missing)}")
        self.header = header
        self.missing = missing
        self.cause = cause


def parse_rows(content: str, fmt: RowFormat, columns: Sequence[str],
               pad_short: bool = False) -> Iterator[Row]:
    """The rows of a CSV or JSONL text, with the values of ``columns`` in that order."""
    if fmt == "csv":
        return csv_rows(content, columns, pad_short)
    return jsonl_rows(content, columns)


def csv_rows(content: str, columns: Sequence[str], pad_short: bool = False,
             header: Sequence[str] | None = None, first_line: int = 1) -> Iterator[Row]:
    """Rows of a CSV with a header; ``line`` is the physical line where a row starts (a line
    ends at "\\r\\n", "\\r" or "\\n", as the csv reader counts lines).

    ``header`` and ``first_line``: for a range of a file cut at a record boundary after its
    header, the file's header and the number of the range's first line; without a ``header``
    the content starts with its own, on line 1."""
    if header is None:
        content = content.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(content, newline=""))
    if header is None:
        header = _first_record(reader)
    missing = [column for column in columns if column not in header]
    if missing:
        raise HeaderError(list(header), missing)
    at = [header.index(column) for column in columns]
    offset = first_line - 1
    start = offset + reader.line_num + 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Row(start, None, f"unparseable CSV: {exc}")
        else:
            if fields:  # a blank line is no row
                yield _csv_row(start, fields, len(header), at, pad_short)
        start = offset + reader.line_num + 1


def _first_record(reader: Iterator[list[str]]) -> list[str]:
    """The header: the first record ([] when the text is empty or starts with a blank line)."""
    try:
        return next(reader, [])
    except csv.Error as exc:
        raise HeaderError([], [], f"{exc}") from None


def csv_header(content: str) -> tuple[list[str], int]:
    """(the header of a CSV text, the number of lines it takes), as ``csv_rows`` reads it;
    raises ``HeaderError`` when it cannot be read."""
    reader = csv.reader(io.StringIO(content.removeprefix("\ufeff"), newline=""))
    return _first_record(reader), reader.line_num


def csv_has_row(content: str) -> bool:
    """Whether a CSV text has a record after its header (a blank line is none), as
    ``csv_rows`` would find one; a text the reader chokes on has something to report."""
    reader = csv.reader(io.StringIO(content.removeprefix("\ufeff"), newline=""))
    try:
        _first_record(reader)
        return any(fields for fields in reader)
    except (csv.Error, HeaderError):
        return True


def csv_line_ends(content: str) -> int:
    """The line ends in a CSV text as the csv reader counts them: "\\r\\n", "\\r" or "\\n"."""
    return content.count("\n") + content.count("\r") - content.count("\r\n")


def csv_ends_quoted(content: str, quoted: bool) -> bool:
    """Whether the csv reader (the excel dialect ``csv_rows`` uses) ends ``content`` inside a
    quoted field, when it starts it at a line start inside one (``quoted``) or at a record
    boundary. A quote opens a field only at a field's start (after a comma or a line end): in
    a field that is not quoted it is just a character, and after a closing quote the field
    goes on unquoted until a comma or a line end; "" in a quoted field is a quote."""
    at = 0
    while True:
        found = content.find('"', at)
        if found < 0:
            return quoted
        if quoted:
            if content.startswith('"', found + 1):  # "" inside a quoted field
                at = found + 2
                continue
            quoted = False
        elif found == 0 or content[found - 1] in ",\r\n":
            quoted = True
        at = found + 1


def _csv_row(line: int, fields: list[str], width: int, at: list[int], pad_short: bool) -> Row:
    """The wanted fields (at positions ``at``) of a row, or why its width is wrong."""
    if len(fields) > width or (len(fields) < width and not pad_short):
        return Row(line, None, f"{len(fields)} fields, the header has {width}")
    return Row(line, tuple(fields[i] if i < len(fields) else None for i in at))


_BLANK_LINE = re.compile(r"^[^\S\n]*$", re.MULTILINE)  # whitespace only, as str.strip() sees it


def jsonl_blank_lines(content: str, first_line: int = 1) -> int:
    """The lines ``jsonl_rows`` skips as blank: its rows plus these are the lines of
    ``content`` (``wc -l``, plus a last line without "\\n")."""
    if first_line == 1:
        content = content.removeprefix("\ufeff")
    found = len(_BLANK_LINE.findall(content))
    return found - 1 if not content or content.endswith("\n") else found  # no line after "\n"


def jsonl_rows(content: str, columns: Sequence[str], first_line: int = 1) -> Iterator[Row]:
    """One JSON object per line; ``line`` counts every line, blank ones included.

    ``first_line``: the number of ``content``'s first line, when it is a range of a file cut
    at a line start (only line 1 can start with the byte-order mark)."""
    if first_line == 1:
        content = content.removeprefix("\ufeff")
    for number, line in enumerate(content.split("\n"), start=first_line):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Row(number, None, f"invalid JSON: {exc.msg} at column {exc.colno}")
        except (ValueError, RecursionError) as exc:  # e.g. a 5,000-digit number, deep nesting
            yield Row(number, None, f"invalid JSON: {type(exc).__name__}")
        else:
            if isinstance(value, dict):
                yield Row(number, tuple(value.get(column) for column in columns))
            else:
                yield Row(number, None, f"a JSON {type(value).__name__}, not an object")
