"""A small set of real-world, broken and odd text inputs, each with the outcome ingest must give.

``write_text_corpus(root)`` writes three inputs, each ingested on its own:

* ``root/folders/<label>/<name>.txt`` (labels ``pos`` and ``neg``): one document per file,
  keyed ``"folders/<label>/<name>.txt"``;
* ``root/reviews.csv`` (columns ``text,label``, saved as Excel does: UTF-8 with a BOM, CRLF
  between rows, LF inside quoted cells) and ``root/reviews.jsonl`` (keys ``text``, ``label``):
  one document per row, keyed ``"<file>:<line>"``, the 1-based physical line where the row
  starts (the CSV header is line 1; blank lines hold no row but are counted).

It returns ``{key: expected outcome}`` under the default configuration:

* ``"accepted"``, or the quarantine reason code (``"empty_text"``, ``"malformed_row"``, ...);
* ``"duplicate_group:<name>"``: documents that clean to the same text under one label; the
  dataset keeps exactly one of each group and quarantines the others as ``duplicate``;
* ``"near_duplicate_group:<name>"``: a ~40-word document and a copy with one word changed
  (Jaccard 0.87 over word 3-shingles); exactly one is kept, the other is ``near_duplicate``;
* ``"conflicting_labels"``: the same text under two labels; both are quarantined;
* ``"empty_file"``: a 0-byte file, rejected by the job's listing before it is read.

Per-record cleaning decides neither duplicates nor label conflicts: there every group member is
accepted, and the 0-byte file on its own is ``empty_text``. Every other document differs from
every other in its words, so only the intended groups share a hash or a near-duplicate pair.

With the default ``text.fallback_encoding: latin-1`` every byte string decodes, so the invalid
UTF-8 and latin-1 files are accepted. Under ``STRICT_DECODING_OVERRIDES`` (fallback utf-8)
nothing rescues them: their outcomes become those in ``STRICT_DECODING_OUTCOMES``.
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path

STRICT_DECODING_OVERRIDES = ("text.fallback_encoding=utf-8",)
STRICT_DECODING_OUTCOMES = {
    "folders/pos/latin1.txt": "undecodable",
    "folders/neg/invalid_utf8.txt": "undecodable",
}

LONG_LINE = "folders/neg/long_line.txt"
LONG_LINE_BYTES = 5_000_000

# Emoji sequences, spelled out: the joiners (U+200D) and variation selectors are invisible.
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # man, woman, girl, boy
RAINBOW_FLAG = "\U0001f3f3\ufe0f\u200d\U0001f308"  # white flag, emoji style, rainbow
HEART = "\u2764\ufe0f"
THUMBS_UP = "\U0001f44d\U0001f3fd"  # with a medium skin tone

# Latin-1 can encode it, so the same text can be saved in every encoding.
ENCODED = "Crème brûlée, déjà vu: the café scene is très bien, naïve and charming."
NEAR_DUPLICATE = (
    "The slow burn of the first hour pays off when the sisters finally return to the "
    "farmhouse, and every quiet scene before that {} suddenly matters; the score stays "
    "restrained, the camera patient, and the final shot lingers exactly as long as it needs."
)
CONFLICT = "Nobody can agree whether this ending is brilliant or awful."
TWICE = "An exact duplicate review, filed twice under the same label."
HTML = (
    "<!DOCTYPE html><html><head><title>Review</title><style>p { color: red; }</style>"
    "<script>document.write('<p>not text</p>');</script></head><body><p>Loved it &amp; "
    "would watch again &mdash; 10/10 &lt;3</p><!-- editor: cut this --></body></html>"
)


def _long_line() -> bytes:
    """A 5 MB document on a single line, built by repetition (a few milliseconds)."""
    sentence = b"An endless monologue about nothing in particular keeps going and going. "
    return (sentence * (LONG_LINE_BYTES // len(sentence) + 1))[:LONG_LINE_BYTES]


def _folders() -> dict[str, tuple[bytes, str]]:
    """Relative path -> (file bytes, expected outcome)."""
    encodings = "duplicate_group:encodings"
    return {
        "pos/plain.txt": (b"A three-hour cinema master class that never once feels long.",
                          "accepted"),
        "pos/empty.txt": (b"", "empty_file"),
        "pos/whitespace_only.txt": (b"  \r\n\t \xc2\xa0 \n", "empty_text"),
        "pos/markup_only.txt": (b"<p>&nbsp;</p><!-- nothing to see --><br/>", "empty_text"),
        "pos/utf8.txt": (ENCODED.encode(), encodings),
        "pos/utf8_bom.txt": (codecs.BOM_UTF8 + ENCODED.encode(), encodings),
        "pos/utf16_le_bom.txt": (codecs.BOM_UTF16_LE + ENCODED.encode("utf-16-le"), encodings),
        "pos/utf16_be_bom.txt": (codecs.BOM_UTF16_BE + ENCODED.encode("utf-16-be"), encodings),
        "pos/latin1.txt": (ENCODED.encode("latin-1"), encodings),
        "pos/nul_bytes.txt": (b"Subtitles\x00 were out of sync\x00\x00 but the story held up.",
                              "accepted"),
        "pos/html.txt": (HTML.encode(), "accepted"),
        "pos/emoji_zwj.txt": (f"Family movie night {FAMILY} with the rainbow flag {RAINBOW_FLAG}, "
                              f"a heart {HEART} and a thumbs up {THUMBS_UP} at the end.".encode(),
                              "accepted"),
        "pos/cjk.txt": ("这部电影非常好看，演员的表演很出色。ストーリーも最高でした。"
                        "정말 재미있는 영화예요.".encode(), "accepted"),
        "pos/arabic_persian_rtl.txt": ("\u200fفيلم رائع جدا، أنصح بمشاهدته (2023)\u200f\n"
                                       "این فیلم را دوباره می\u200cبینم.".encode(), "accepted"),
        "pos/crlf.txt": (b"First line of a review written on Windows.\r\nSecond line: the "
                         b"pacing drags.\r\n\r\nVerdict: worth it.\r\n", "accepted"),
        "pos/urls_emails_mentions.txt": (b"Trailer at https://example.com/trailer?id=42, "
                                         b"questions to critic@example.org, shout-out to "
                                         b"@filmfan and www.example.net.", "accepted"),
        "pos/invisible.txt": ("Zero\u200bwidth joins, soft\u00adhyphen, a bell\x07, an escape "
                              "\x1b[0m code and a right-to-left \u202eoverride\u202c too."
                              .encode(), "accepted"),
        "pos/fullwidth.txt": ("Ｆｕｌｌｗｉｄｔｈ letters and the ﬁ ligature turn plain "
                              "under NFKC.".encode(), "accepted"),
        "pos/twice_a.txt": (TWICE.encode(), "duplicate_group:twice"),
        "pos/twice_b.txt": (TWICE.replace(" ", "  \t", 2).replace("filed", "\r\nfiled").encode()
                            + b"\n", "duplicate_group:twice"),
        "pos/both.txt": (CONFLICT.encode(), "conflicting_labels"),
        "neg/both.txt": (CONFLICT.encode(), "conflicting_labels"),
        "neg/near_a.txt": (NEAR_DUPLICATE.format("moment").encode(),
                           "near_duplicate_group:slow_burn"),
        "neg/near_b.txt": (NEAR_DUPLICATE.format("instant").encode(),
                           "near_duplicate_group:slow_burn"),
        "neg/hebrew_rtl.txt": ("הסרט היה ארוך מדי והעלילה משעממת.".encode(), "accepted"),
        "neg/invalid_utf8.txt": (b"The plot falls apart \xff\xfe halfway and the \xc3 ending "
                                 b"is a mess.", "accepted"),
        "neg/utf16_le_no_bom.txt": ("Dull and lifeless, ninety minutes wasted.".encode(
            "utf-16-le"), "accepted"),
        "neg/controls_only.txt": (b"\x07\x08\x1b\x7f", "empty_text"),
        "neg/plain.txt": (b"Two hours I will never get back.", "accepted"),
        "neg/long_line.txt": (_long_line(), "too_long"),
    }


def _csv() -> tuple[bytes, dict[int, str]]:
    """(file bytes, {line: outcome}): a BOM, CRLF between rows, a LF inside one quoted cell."""
    rows = [
        ("text,label", None),
        ("A plain review that ends here,pos", "accepted"),
        ('"Quoted, with a comma and ""double quotes"" inside",neg', "accepted"),
        ('"Spans two lines:\nthe second line is still the same review",pos', "accepted"),
        ("just some text and no label column", "malformed_row"),
        ("too,many,columns,here", "malformed_row"),
        ('"Review with an empty label",', "missing_label"),
        ('"   ",neg', "empty_text"),
        ('"Label with spaces and capitals", POS ', "accepted"),
        ('"<b>Bold</b> claims &amp; small print",neg', "accepted"),
        ("Same row twice in one file,pos", "duplicate_group:csv_twice"),
        ("Same row twice in one file,pos", "duplicate_group:csv_twice"),
        ('"Emoji row 🎬🍿 with popcorn",pos', "accepted"),
        ("", None),
        ("After a blank line the numbering still counts it,neg", "accepted"),
    ]
    outcomes, line = {}, 1
    for row, outcome in rows:
        if outcome is not None:
            outcomes[line] = outcome
        line += row.count("\n") + 1
    return codecs.BOM_UTF8 + "".join(row + "\r\n" for row, _ in rows).encode(), outcomes


def _jsonl() -> tuple[bytes, dict[int, str]]:
    """(file bytes, {line: outcome}): one JSON value per line, ASCII-escaped as json.dumps does."""
    rows: list[tuple[str, str | None]] = [
        (json.dumps({"text": "A tidy little thriller with a clever final act.", "label": "pos"}),
         "accepted"),
        ('{"text": "cut off in the middle, "label": "neg"}', "malformed_row"),
        (json.dumps(["not", "an", "object"]), "malformed_row"),
        (json.dumps({"label": "neg"}), "missing_text"),
        (json.dumps({"text": None, "label": "neg"}), "missing_text"),
        (json.dumps({"text": 42, "label": "pos"}), "text_not_string"),
        (json.dumps({"text": "Nobody told me which label this is."}), "missing_label"),
        ("", None),
        (" \t\r", None),
        (json.dumps({"text": "An escaped lone surrogate \ud800 and a clapper 🎬 survive.",
                     "label": "neg"}), "accepted"),
        (json.dumps({"text": ["a", "list"], "label": "pos"}), "text_not_string"),
        (json.dumps({"text": "A float label is not a class.", "label": 1.5}), "missing_label"),
        (json.dumps({"text": "Integer labels count by their decimal form.", "label": 1}),
         "accepted"),
        (json.dumps({"text": "   \t  ", "label": "pos"}), "empty_text"),
        (json.dumps({"text": "Line\nbreaks\r\nand\ttabs inside a JSON string.", "label": "neg"}),
         "accepted"),
        (json.dumps({"text": "<script>document.write('hi')</script>", "label": "pos"}),
         "empty_text"),
        (json.dumps({"text": "A label with an escaped lone surrogate is no label.",
                     "label": "pos\ud800"}), "missing_label"),
    ]
    outcomes = {number: outcome for number, (_, outcome) in enumerate(rows, start=1)
                if outcome is not None}
    return "".join(row + "\n" for row, _ in rows).encode(), outcomes


def write_text_corpus(root: Path) -> dict[str, str]:
    """Write the corpus under ``root``; return {key (see the module docstring): outcome}."""
    expected = {}
    for relative, (data, outcome) in _folders().items():
        path = root / "folders" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        expected[f"folders/{relative}"] = outcome
    for name, (data, outcomes) in (("reviews.csv", _csv()), ("reviews.jsonl", _jsonl())):
        (root / name).write_bytes(data)
        expected |= {f"{name}:{line}": outcome for line, outcome in outcomes.items()}
    return expected
