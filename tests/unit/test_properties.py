"""Property-based tests (Hypothesis) of the per-record cleaners: arbitrary bytes as an image or a
document, real files with flipped, cut or inserted bytes, arbitrary Unicode text.

For every input: no exception escapes and none is an ``unexpected_error`` (a bug, not a bad
input), the outcome is the same when the input is cleaned twice, and an accepted record holds
what it claims (an image that decodes to the stored shape; text whose hash and token count match).
Derandomized, no example database: the same examples on every run and every machine.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.config import load_config
from pipeline.datasets.features import decode_image, image_shape
from pipeline.ingest.image_records import clean_image_file
from pipeline.ingest.text import text_hash
from pipeline.ingest.text_records import TextRecord, clean_text_document, file_rows
from pipeline.ingest.tokens import tokenize

CFG = load_config(overrides=["images.min_size=4"])
IMAGES, TEXT = CFG.images, CFG.text
RATIOS = {"train": 0.8, "val": 0.1, "test": 0.1}
PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _real_files() -> dict[str, bytes]:
    """Small valid files of every supported format (and their variants) to mutate."""
    rng = np.random.default_rng(18)
    rgb = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    files = {}
    for fmt, mode, params in [("PNG", "RGB", {}), ("PNG", "P", {}), ("PNG", "LA", {}),
                              ("JPEG", "RGB", {"quality": 80}), ("JPEG", "L", {}),
                              ("GIF", "P", {}), ("BMP", "RGB", {}), ("WEBP", "RGB", {}),
                              ("TIFF", "RGB", {"compression": "tiff_lzw"})]:
        buf = io.BytesIO()
        Image.fromarray(rgb).convert(mode).save(buf, format=fmt, **params)
        files[f"{fmt}-{mode}"] = buf.getvalue()
    return files


REAL = _real_files()


@st.composite
def mutated(draw) -> bytes:
    """A real file with a few bytes flipped or replaced, then maybe cut or grown."""
    data = bytearray(REAL[draw(st.sampled_from(sorted(REAL)))])
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255)) if draw(st.booleans()) else data[at] ^ 0xFF
    cut = draw(st.sampled_from(["none", "truncate", "insert"]))
    if cut == "truncate":
        data = data[:draw(st.integers(0, len(data)))]
    elif cut == "insert":
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


def _check_image(data: bytes) -> None:
    record = clean_image_file("in/cat/x.png", data, "cat", IMAGES, RATIOS)
    assert record.reason != "unexpected_error", record.detail
    assert clean_image_file("in/cat/x.png", data, "cat", IMAGES, RATIOS) == record
    if record.reason is None:
        assert record.split in RATIOS and len(record.content_hash) == 64
        assert decode_image(record.image).shape == image_shape(IMAGES)
    else:
        assert record.image is None and record.split is None and record.detail


@PROPERTY
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_as_an_image(data):
    _check_image(data)


@PROPERTY
@given(mutated())
def test_mutated_real_images(data):
    _check_image(data)


def test_every_unmutated_real_image_is_accepted():
    """The mutation test starts from files that are accepted as they are."""
    for name, data in REAL.items():
        assert clean_image_file("x", data, "cat", IMAGES, RATIOS).reason is None, name


def _check_document(raw: bytes | str) -> TextRecord:
    record = clean_text_document("in/pos/x.txt", None, raw, "pos", TEXT, RATIOS)
    assert record.reason != "unexpected_error", record.detail
    assert clean_text_document("in/pos/x.txt", None, raw, "pos", TEXT, RATIOS) == record
    if record.reason is None:
        assert record.text and record.text == " ".join(record.text.split())
        assert record.content_hash == text_hash(record.text)
        assert record.n_tokens == len(tokenize(record.text, TEXT.token_pattern)) > 0
        assert record.split in RATIOS and record.label_name == "pos"
    else:
        assert record.text is None and record.detail
    return record


@PROPERTY
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_as_a_document(data):
    _check_document(data)


@PROPERTY
@given(st.text(max_size=2000))
def test_arbitrary_unicode_text(text):
    _check_document(text)
    for encoding in ("utf-8", "utf-16"):  # as a file: a BOM'd UTF-16 file decodes the same
        try:
            raw = text.encode(encoding)
        except UnicodeEncodeError:  # lone surrogates: no file can hold them
            continue
        _check_document(raw)


@PROPERTY
@given(st.lists(st.text(max_size=40), max_size=8), st.sampled_from(["csv", "jsonl"]))
def test_arbitrary_table_files(lines, fmt):
    """A CSV or JSONL file made of arbitrary lines: every item is a row to clean or a record."""
    data = "\n".join(["text,label", *lines] if fmt == "csv" else lines).encode("utf-8", "replace")
    items = list(file_rows("t." + fmt, data, fmt, "text", "label", TEXT))
    assert list(file_rows("t." + fmt, data, fmt, "text", "label", TEXT)) == items
    tallies = [item for item in items if isinstance(item, TextRecord) and item.blank_lines]
    for item in items:
        if isinstance(item, TextRecord) and item not in tallies:
            assert item.reason not in (None, "unexpected_error")
        elif not isinstance(item, TextRecord):
            _check_document(item.text) if isinstance(item.text, str) else None
    text = data.decode("utf-8")
    rows = [item for item in items if item not in tallies]
    if fmt == "jsonl" and "\x00" not in text and all(item.line for item in rows):
        # read line by line (not refused whole): every line is a row or a counted blank line
        # (``wc -l``, plus a last line without a newline)
        lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
        assert len(rows) + sum(t.blank_lines for t in tallies) == lines


@pytest.mark.parametrize("name", sorted(REAL))
def test_a_real_file_cut_anywhere_is_never_an_unexpected_error(name):
    """Every prefix of one small file: the exhaustive version of the truncation mutation."""
    data = REAL[name]
    for end in range(0, len(data), max(1, len(data) // 64)):
        _check_image(data[:end])
