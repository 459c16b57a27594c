"""One raw document or row -> one record: accepted (split, cleaned text, hash) or rejected.

Also the rows of a CSV or JSONL file (parsed by ``rows``), and the raw-text-to-ids path for
inference, which cleans exactly as ingest did.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from pipeline.config import TextConfig
from pipeline.datasets.profiles import Profile, dumps, oov_share, text_profile
from pipeline.datasets.reasons import Reason
from pipeline.ingest.rejection import Rejected
from pipeline.ingest.rows import (
    HeaderError,
    Row,
    RowFormat,
    csv_rows,
    jsonl_blank_lines,
    jsonl_rows,
    parse_rows,
)
from pipeline.ingest.split import assign_split
from pipeline.ingest.text import (
    check_length,
    clean_text,
    decode_document,
    decode_text,
    normalise_label,
    text_hash,
)
from pipeline.ingest.tokens import OOV, Tokenizer, tokenize


class TextRecord(NamedTuple):
    """A cleaned input. Accepted records have ``split``; rejected ones ``reason`` and ``detail``.

    ``line`` is the 1-based line of a CSV or JSONL row (None for a whole file); ``text`` is the
    cleaned text. Token ids come later: the vocabulary is built from the whole train split.
    """

    source: str
    line: int | None
    label_name: str | None
    split: str | None
    text: str | None
    content_hash: str | None
    n_tokens: int | None
    reason: str | None
    detail: str | None
    profile: str | None = None  # accepted: the text's profile as JSON (datasets.profiles)
    blank_lines: int = 0  # a tally (``tally``): not an input

    @classmethod
    def tally(cls, source: str, blank_lines: int) -> TextRecord:
        """Not an input: the blank lines of a JSONL file (or range), which the manifest counts
        so that a line count of the file reconciles; set apart before any row is judged."""
        return cls(source, None, None, None, None, None, None, None, None, None, blank_lines)

    @classmethod
    def rejected(cls, source: str, line: int | None, reason: Reason, detail: str | None,
                 label: str | None = None) -> TextRecord:
        """A quarantined input; ``reason`` stored as a plain str (Spark's JVM unpickler, which
        reads rows made in Python, knows no enum)."""
        return cls(source, line, label, None, None, None, None, str(reason), detail)


class RawDocument(NamedTuple):
    """A document or row as found, before cleaning: ``text`` is a file's bytes or a parsed
    value of any type, ``label`` likewise (``clean_text_document`` judges both)."""

    source: str
    line: int | None
    text: object
    label: object


def file_rows(source: str, data: bytes, fmt: RowFormat, text_col: str, label_col: str,
              cfg: TextConfig) -> Iterator[RawDocument | TextRecord]:
    """A CSV or JSONL file -> its rows to clean, and rejected records for the malformed ones
    (or one for the whole file, when it does not decode or its header lacks a column)."""
    try:
        content = decode_text(data, cfg)
    except Rejected as rejected:
        yield TextRecord.rejected(source, None, rejected.reason,
                                  f"the whole file: {rejected.detail}")
        return
    try:
        found = False
        for row in parse_rows(content, fmt, (text_col, label_col)):
            found = True
            yield _row_item(source, row)
        if not found:
            yield no_rows(source, fmt)
        yield from _blank_lines(source, content, fmt, 1)
    except HeaderError as bad:
        if bad.cause is not None:
            yield TextRecord.rejected(source, 1, Reason.MALFORMED_ROW,
                                      f"line 1: unreadable header: {bad.cause}")
        else:
            yield bad_header(source, bad.header, bad.missing)


def bad_header(source: str, header: Sequence[str], missing: Sequence[str]) -> TextRecord:
    """The one record of a table file whose header lacks a wanted column."""
    return TextRecord.rejected(source, 1, Reason.BAD_HEADER,
                               f"the header {list(header)} lacks column {', '.join(missing)}")


def no_rows(source: str, fmt: RowFormat) -> TextRecord:
    """The one record of a table file without a row (a CSV header alone): still accounted for."""
    return TextRecord.rejected(source, None, Reason.NO_ROWS,
                               f"the whole file: no {fmt.upper()} row to read")


def _row_item(source: str, row: Row) -> RawDocument | TextRecord:
    """A parsed row to clean, or a ``malformed_row`` record naming its line and problem."""
    if row.values is None:
        return TextRecord.rejected(source, row.line, Reason.MALFORMED_ROW,
                                   f"line {row.line}: {row.problem}")
    return RawDocument(source, row.line, *row.values)


def range_rows(source: str, content: str, first_line: int, text_col: str, label_col: str,
               fmt: RowFormat = "jsonl", header: Sequence[str] | None = None
               ) -> Iterator[RawDocument | TextRecord]:
    """The rows of a JSONL or CSV range (decoded, NULs removed) whose first line is
    ``first_line``: exactly the items ``file_rows`` gives for those lines of the whole file,
    but for the tally of blank lines, which each range makes for its own.
    A CSV range after the first gets the file's ``header``; the first reads its own."""
    columns = (text_col, label_col)
    rows = (jsonl_rows(content, columns, first_line) if fmt == "jsonl"
            else csv_rows(content, columns, header=header, first_line=first_line))
    for row in rows:
        yield _row_item(source, row)
    yield from _blank_lines(source, content, fmt, first_line)


def _blank_lines(source: str, content: str, fmt: RowFormat, first_line: int
                 ) -> Iterator[TextRecord]:
    """The tally of a JSONL text's blank lines, if it has any (a CSV row may span lines, so
    its lines do not add up to its rows anyway)."""
    count = jsonl_blank_lines(content, first_line) if fmt == "jsonl" else 0
    if count:
        yield TextRecord.tally(source, count)


STRING = "string"  # the encoding recorded for a value a table reader already decoded


def document_text(raw: object, cfg: TextConfig) -> tuple[str, str]:
    """A document as found -> (text before cleaning, its encoding); raises ``Rejected``.

    Bytes (a file) are decoded; a str (a CSV, JSONL or Parquet value) is already text.
    """
    if raw is None:
        raise Rejected(Reason.MISSING_TEXT, "the text is missing or null")
    if isinstance(raw, bytes | bytearray | memoryview):
        return decode_document(bytes(raw), cfg)
    if isinstance(raw, str):
        return raw, STRING
    raise Rejected(Reason.TEXT_NOT_STRING,
                   f"the text is not a string: {type(raw).__name__} {raw!r:.40}")


def clean_text_document(source: str, line: int | None, raw: bytes | str | None,
                        raw_label: object, cfg: TextConfig, ratios: dict[str, float]
                        ) -> TextRecord:
    """Never raises: any failure becomes a rejected record naming the reason.

    The label is checked first (cheap, and a record without one is unusable); a rejected
    record keeps its label when that was valid.
    """
    label = None
    try:
        label = normalise_label(raw_label, cfg)
        text, encoding = document_text(raw, cfg)
        cleaned = clean_text(text, cfg)
        check_length(cleaned, cfg)
        n_tokens = len(tokenize(cleaned, cfg.token_pattern))
        if n_tokens == 0:
            raise Rejected(Reason.NO_TOKENS,
                           f"no token matches text.token_pattern in {cleaned!r:.60}")
        content_hash = text_hash(cleaned)
        return TextRecord(source, line, label, assign_split(content_hash, ratios), cleaned,
                          content_hash, n_tokens, None, None,
                          dumps(text_profile(cleaned, n_tokens, encoding)))
    except Rejected as rejected:
        return TextRecord.rejected(source, line, rejected.reason, rejected.detail, label)
    except Exception as exc:  # a cleaning bug must quarantine one document, not kill the job
        return TextRecord.rejected(source, line, Reason.UNEXPECTED_ERROR,
                                   f"{type(exc).__name__}: {exc}", label)


def encode_document(raw: bytes | str, cfg: TextConfig, tokenizer: Tokenizer
                    ) -> tuple[np.ndarray, int, Profile]:
    """Raw text -> (ids, length, profile) for inference, cleaned as ingest cleaned; raises
    ``Rejected``.

    ``cfg`` must be the ``text`` config of the dataset version (its manifest records it).
    Text that ingest would refuse for itself (missing, undecodable, empty after cleaning) is
    rejected; the length limits are not applied: a long text is truncated to ``max_len``.
    The profile is what ingest records of a stored text (``datasets.profiles``).
    """
    text, encoding = document_text(raw, cfg)
    cleaned = clean_text(text, cfg)
    if not cleaned:
        raise Rejected(Reason.EMPTY_TEXT, "nothing is left after cleaning")
    ids, length = tokenizer(cleaned)
    profile = text_profile(cleaned, len(tokenize(cleaned, tokenizer.pattern)), encoding)
    return ids, length, profile | {"oov": oov_share(ids, length, OOV)}
