"""Why an input was not accepted: every reason a quarantine table or a prediction row can hold.

Plain Python, no imports beyond the standard library, so every layer (per-record cleaning,
the Spark jobs, inference) can name reasons without pulling in Spark. ``Reason`` is a
``StrEnum``: a member *is* its string, so stored tables hold the same values as ever and
compare equal to plain strings. ``MEANINGS`` gives each one line; the README's reason tables
repeat those lines, and ``tests/unit/test_reasons.py`` keeps the two identical.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """A quarantine (or prediction) reason: a short stable code; the row's detail says more."""

    # images: plain Python in pipeline/ingest/images.py
    EMPTY_FILE = "empty_file"
    NOT_AN_IMAGE = "not_an_image"
    CORRUPT_IMAGE = "corrupt_image"
    TOO_MANY_PIXELS = "too_many_pixels"
    TOO_SMALL = "too_small"
    ANIMATED = "animated"
    ENCODE_FAILED = "encode_failed"
    # where a file was found (folder layouts)
    HIDDEN_FILE = "hidden_file"
    NO_LABEL = "no_label"
    SYMLINK_OUTSIDE_ROOT = "symlink_outside_root"
    OUTSIDE_ROOT = "outside_root"
    # listings of image paths (CSV, JSONL)
    BAD_LISTING = "bad_listing"
    BAD_LISTING_ROW = "bad_listing_row"
    DUPLICATE_ENTRY = "duplicate_entry"
    MISSING_FILE = "missing_file"
    # text documents and rows
    MALFORMED_ROW = "malformed_row"
    BAD_HEADER = "bad_header"
    NO_ROWS = "no_rows"
    MISSING_TEXT = "missing_text"
    TEXT_NOT_STRING = "text_not_string"
    UNDECODABLE = "undecodable"
    BINARY_CONTENT = "binary_content"
    EMPTY_TEXT = "empty_text"
    MISSING_LABEL = "missing_label"
    UNKNOWN_LABEL = "unknown_label"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    NO_TOKENS = "no_tokens"
    # across the dataset
    DUPLICATE = "duplicate"
    NEAR_DUPLICATE = "near_duplicate"
    CONFLICTING_LABELS = "conflicting_labels"
    # any input
    TOO_LARGE = "too_large"
    UNREADABLE = "unreadable"
    UNEXPECTED_ERROR = "unexpected_error"

    @property
    def meaning(self) -> str:
        """One line for people: what the reason says about the input."""
        return MEANINGS[self]


MEANINGS: dict[Reason, str] = {
    Reason.EMPTY_FILE: "the file has no bytes",
    Reason.NOT_AN_IMAGE: "no supported image format (PNG, JPEG, GIF, BMP, TIFF, WebP) "
                         "recognised in the file header",
    Reason.CORRUPT_IMAGE: "an image signature, but the header or the pixels do not decode "
                          "(e.g. a truncated file)",
    Reason.TOO_MANY_PIXELS: "the header claims more than `images.max_pixels` pixels; "
                            "nothing is decoded",
    Reason.TOO_SMALL: "a side shorter than `images.min_size`",
    Reason.ANIMATED: "an animation, with `images.animation=reject`",
    Reason.ENCODE_FAILED: "the cleaned pixels could not be encoded as `images.encoding`",
    Reason.HIDDEN_FILE: "a name starting with `.` or `_`, or an upload in progress "
                        "(`*._COPYING_`), below the input root (Spark skips these); not read",
    Reason.NO_LABEL: "a file not in `ROOT/<label>/`, or a listing row with an empty label",
    Reason.SYMLINK_OUTSIDE_ROOT: "a symbolic link leading out of the input root",
    Reason.OUTSIDE_ROOT: "a path that is not below the input root",
    Reason.BAD_LISTING: "a listing that is not .csv/.jsonl or whose CSV header lacks "
                        "`path` or `label`: the job stops (not a quarantine row)",
    Reason.BAD_LISTING_ROW: "a malformed listing row (bad JSON or CSV, no path); named "
                            "`listing:line`",
    Reason.DUPLICATE_ENTRY: "a path the listing already named on an earlier line",
    Reason.MISSING_FILE: "a listed path with no file",
    Reason.MALFORMED_ROW: "a CSV row with too few or too many fields, bad JSON, or a JSON "
                          "value that is not an object (file and line in the detail)",
    Reason.BAD_HEADER: "a CSV whose header lacks the text or the label column",
    Reason.NO_ROWS: "a table file without a row (a CSV header alone, a Parquet file of no "
                    "rows): recorded, nothing to read",
    Reason.MISSING_TEXT: "no text, or a null",
    Reason.TEXT_NOT_STRING: "a text that is a number, a list or another non-string",
    Reason.UNDECODABLE: "bytes no configured encoding decodes (`text.on_decode_error: "
                        "replace` keeps them as U+FFFD)",
    Reason.BINARY_CONTENT: "bytes that are not text: a known binary signature (image, archive, "
                           "executable, ...) or over 5% control characters once decoded",
    Reason.EMPTY_TEXT: "nothing left after decoding or cleaning",
    Reason.MISSING_LABEL: "no label, an empty one, or one that is not a string or an integer "
                          "(or not valid Unicode)",
    Reason.UNKNOWN_LABEL: "a label outside `text.labels` when that list is set",
    Reason.TOO_SHORT: "fewer characters than `text.min_chars` after cleaning",
    Reason.TOO_LONG: "more characters than `text.max_chars` after cleaning",
    Reason.NO_TOKENS: "no token of `text.token_pattern` in the cleaned text",
    Reason.DUPLICATE: "the same content (decoded pixels, cleaned text) as a kept input with "
                      "the same label; the detail names it",
    Reason.NEAR_DUPLICATE: "text whose word shingles are at least "
                           "`text.near_duplicate_jaccard` similar to a kept input's, same label",
    Reason.CONFLICTING_LABELS: "the same (or near-same) content under different labels: all "
                               "copies are quarantined",
    Reason.TOO_LARGE: "the listed size is over `ingest.max_file_bytes`; the file is not read",
    Reason.UNREADABLE: "listed, but reading it failed (gone, no permission, a dangling link); "
                       "the detail names the error",
    Reason.UNEXPECTED_ERROR: "a bug in the per-record code; the detail holds the exception",
}
assert set(MEANINGS) == set(Reason), "every reason needs a meaning"
