"""Rows of raw text files (CSV, JSONL): (line, text, label) or why a row is malformed.

Pure functions over a file's decoded content; the Spark job maps them over whole files so
that every row keeps its file and line number.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from typing import NamedTuple

# a 5 MB text field is data to judge (too_long), not a parse error
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class RawRow(NamedTuple):
    """One row as found: ``text``/``label`` as parsed (any type), or ``reason``/``detail``."""

    line: int
    text: object
    label: object
    reason: str | None = None
    detail: str | None = None


def _malformed(line: int, detail: str) -> RawRow:
    return RawRow(line, None, None, "malformed_row", f"line {line}: {detail}")


def csv_rows(content: str, text_col: str, label_col: str) -> Iterator[RawRow]:
    """Rows of a CSV with a header; quoted fields may hold newlines and quotes.

    ``line`` is the physical line where the row starts (the header is line 1).
    """
    reader = csv.reader(io.StringIO(content, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        yield _malformed(1, f"unreadable header: {exc}")
        return
    missing = [c for c in (text_col, label_col) if c not in header]
    if missing:
        yield RawRow(1, None, None, "bad_header",
                     f"the header {header} lacks column {', '.join(missing)}")
        return
    text_at, label_at = header.index(text_col), header.index(label_col)
    start = reader.line_num + 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield _malformed(start, f"unparseable CSV: {exc}")
            start = reader.line_num + 1
            continue
        if not fields:  # a blank line is no row
            start = reader.line_num + 1
            continue
        if len(fields) != len(header):
            yield _malformed(start, f"{len(fields)} fields, the header has {len(header)}")
        else:
            yield RawRow(start, fields[text_at], fields[label_at])
        start = reader.line_num + 1


def jsonl_rows(content: str, text_col: str, label_col: str) -> Iterator[RawRow]:
    """One JSON object per line; blank lines are skipped.

    Lines end at "\n" only: JSON strings may hold U+2028 and other characters that
    ``str.splitlines`` would also break at.
    """
    for number, line in enumerate(content.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield _malformed(number, f"invalid JSON: {exc.msg} at column {exc.colno}")
            continue
        except (ValueError, RecursionError) as exc:  # e.g. a 5,000-digit number, deep nesting
            yield _malformed(number, f"invalid JSON: {type(exc).__name__}")
            continue
        if not isinstance(value, dict):
            yield _malformed(number, f"a JSON {type(value).__name__}, not an object")
            continue
        yield RawRow(number, value.get(text_col), value.get(label_col))
