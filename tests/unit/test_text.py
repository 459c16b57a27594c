"""Per-document text cleaning on hand-made cases and a corpus of broken and odd text, no Spark."""

from __future__ import annotations

import codecs
import hashlib
import unicodedata
from collections import defaultdict
from itertools import combinations

import pytest

from pipeline.config import TextConfig, load_config
from pipeline.ingest import text_records
from pipeline.ingest.discover import classify_folder_file
from pipeline.ingest.minhash import shingle_hashes
from pipeline.ingest.rejection import Rejected
from pipeline.ingest.rows import jsonl_rows
from pipeline.ingest.text import (
    check_length,
    clean_text,
    decode_text,
    normalise_label,
    strip_html,
    text_hash,
)
from pipeline.ingest.text_records import (
    TextRecord,
    clean_text_document,
    document_text,
    file_rows,
)
from pipeline.ingest.text_splits import SPLIT_BYTES, RowGroup, range_bytes, row_slices
from pipeline.ingest.tokens import tokenize
from tests.text_corpus import (
    ENCODED,
    FAMILY,
    HEART,
    LONG_LINE,
    LONG_LINE_BYTES,
    RAINBOW_FLAG,
    STRICT_DECODING_OUTCOMES,
    STRICT_DECODING_OVERRIDES,
    THUMBS_UP,
    write_text_corpus,
)

RATIOS = {"train": 0.8, "val": 0.2}


def text_config(*overrides: str) -> TextConfig:
    return load_config(overrides=overrides).text


DEFAULTS = text_config()
STRICT = text_config(*STRICT_DECODING_OVERRIDES)


def _rejected(call, *args) -> Rejected:
    with pytest.raises(Rejected) as info:
        call(*args)
    return info.value


# --- decoding ----------------------------------------------------------------------------


@pytest.mark.parametrize("data", [
    ENCODED.encode(),
    codecs.BOM_UTF8 + ENCODED.encode(),
    codecs.BOM_UTF16_LE + ENCODED.encode("utf-16-le"),
    codecs.BOM_UTF16_BE + ENCODED.encode("utf-16-be"),
    codecs.BOM_UTF32_LE + ENCODED.encode("utf-32-le"),
    codecs.BOM_UTF32_BE + ENCODED.encode("utf-32-be"),
    ENCODED.encode("latin-1"),
], ids=["utf8", "utf8-bom", "utf16le-bom", "utf16be-bom", "utf32le-bom", "utf32be-bom", "latin1"])
def test_every_encoding_and_bom_decodes_to_the_same_text(data):
    assert decode_text(data, DEFAULTS) == ENCODED


def test_astral_characters_survive_utf16_with_a_bom():
    text = f"a {FAMILY} \U0001f3ac b"
    assert decode_text(codecs.BOM_UTF16_LE + text.encode("utf-16-le"), DEFAULTS) == text


def test_nul_bytes_are_removed():
    assert decode_text(b"a\x00b\x00\x00 c", DEFAULTS) == "ab c"
    assert decode_text("plain".encode("utf-16-le"), DEFAULTS) == "plain"  # no BOM: NULs go


@pytest.mark.parametrize("data", [b"", b" \r\n\t ", b"\x00\x00", "\u00a0\u2003".encode(),
                                  codecs.BOM_UTF16_LE + " \n".encode("utf-16-le")])
def test_empty_or_whitespace_only_data_is_empty_text(data):
    assert _rejected(decode_text, data, DEFAULTS).reason == "empty_text"


def test_invalid_utf8_falls_back_to_latin1_by_default():
    assert decode_text(b"caf\xe9 \xff", DEFAULTS) == "café ÿ"


def test_a_fallback_that_also_fails_quarantines_with_the_byte_offset():
    rejected = _rejected(decode_text, b"abc\xffdef", STRICT)
    assert rejected.reason == "undecodable"
    assert "byte offset 3" in rejected.detail and "0xff" in rejected.detail
    cp1252 = text_config("text.fallback_encoding=cp1252")
    assert decode_text(b"\x93smart quotes\x94", cp1252) == "\u201csmart quotes\u201d"
    assert _rejected(decode_text, b"ok \x81", cp1252).reason == "undecodable"  # undefined


def test_replace_puts_a_replacement_character_for_each_bad_sequence():
    cfg = text_config(*STRICT_DECODING_OVERRIDES, "text.on_decode_error=replace")
    assert decode_text(b"caf\xe9 ok \xff", cfg) == "caf\ufffd ok \ufffd"


def test_a_bom_decides_the_codec_and_offsets_count_from_the_file_start():
    odd = codecs.BOM_UTF16_LE + "ab".encode("utf-16-le") + b"x"
    assert "byte offset 6" in _rejected(decode_text, odd, DEFAULTS).detail  # latin-1 not tried
    lone = codecs.BOM_UTF16_LE + b"a\x00\x00\xd8b\x00"
    rejected = _rejected(decode_text, lone, DEFAULTS)
    assert (rejected.reason, "byte offset 4" in rejected.detail) == ("undecodable", True)
    replace = text_config("text.on_decode_error=replace")
    assert decode_text(lone, replace) == "a\ufffdb"


def _binary_samples() -> dict[str, bytes]:
    """Real files of binary formats, made here, each as a text document would hold them."""
    import gzip
    import io
    import random
    import tarfile
    import zipfile

    import numpy as np
    from PIL import Image

    def image(fmt: str) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(np.arange(48 * 48, dtype=np.uint8).reshape(48, 48)).save(buf, fmt)
        return buf.getvalue()

    zipped, tarred = io.BytesIO(), io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("review.txt", "a plain review inside an archive " * 20)
    with tarfile.open(fileobj=tarred, mode="w") as archive:  # all text, valid UTF-8
        content = b"a plain review inside a tar archive, fine."
        info = tarfile.TarInfo("review.txt")
        info.size = len(content)
        archive.addfile(info, io.BytesIO(content))
    return {
        "png": image("PNG"), "jpeg": image("JPEG"), "gif": image("GIF"), "tiff": image("TIFF"),
        "webp": image("WEBP"), "zip": zipped.getvalue(), "tar": tarred.getvalue(),
        "gzip": gzip.compress(b"a review, compressed " * 50, mtime=0),
        "elf": b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x02\x00>\x00" + bytes(100),
        "pdf": b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n",
        "random": random.Random(18).randbytes(4096),
        "sparse_random": bytes(b if i % 3 else 0 for i, b in
                               enumerate(random.Random(5).randbytes(3000))),
    }


BINARY = _binary_samples()


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_files_under_a_text_name_are_binary_content(name):
    """Before: the latin-1 fallback decoded every one of them into garbage tokens."""
    for cfg in (DEFAULTS, text_config("text.on_decode_error=replace")):
        assert _rejected(decode_text, BINARY[name], cfg).reason == "binary_content"
    record = clean_text_document("pos/photo.txt", None, BINARY[name], "pos", DEFAULTS, RATIOS)
    assert (record.reason, record.label_name, record.text) == ("binary_content", "pos", None)
    (whole,) = file_rows("rows.csv", BINARY[name], "csv", "text", "label", DEFAULTS)
    assert (whole.reason, whole.line) == ("binary_content", None)
    assert whole.detail.startswith("the whole file: ")


def test_binary_details_say_what_was_found():
    assert "a PNG image (by its first bytes)" in _rejected(decode_text, BINARY["png"],
                                                           DEFAULTS).detail
    assert "are control characters" in _rejected(decode_text, BINARY["random"], DEFAULTS).detail


@pytest.mark.parametrize(("controls", "binary"), [(5, False), (6, True)])
def test_the_control_share_rule_counts_c0_controls_beyond_5_percent(controls, binary):
    text = ("\x01\x1b" * 50)[:controls] + "a" * (100 - controls)  # 100 characters
    data = text.encode() + b"\x00" * 50  # NULs are not counted
    if binary:
        assert _rejected(decode_text, data, DEFAULTS).reason == "binary_content"
    else:
        assert decode_text(data, DEFAULTS) == text


@pytest.mark.parametrize("data", [
    "“Smart quotes” – and dashes — from cp1252, read as latin-1 … fine".encode("cp1252"),
    "UTF-16 without a byte-order mark, every other byte a NUL".encode("utf-16-le"),
    b"text padded with NULs by a crash" + bytes(4000),
    "\u00e9t\u00e9 na\u00efve d\u00e9j\u00e0 vu".encode("utf-32"),
    "Ligne avec un échappement ANSI \x1b[1mgras\x1b[0m au milieu, assez longue.".encode(),
    b"BZh91 is not a bzip2 stream without its block magic, PK is a word, MZ too",
])
def test_text_stays_text(data):
    assert decode_text(data, DEFAULTS)


# --- cleaning ----------------------------------------------------------------------------

HTML_PAGE = (
    "<html><head><STYLE type='text/css'>p { color: red }</STYLE><script>var s = '<p>x</p>';"
    "</script ></head><body><p>Loved it &amp; more&nbsp;&mdash; &lt;b&gt;raw&lt;/b&gt; "
    "&#x263A;</p><!-- a <b>hidden</b> comment --><p>End</p></body></html>"
)


def test_html_is_stripped_with_script_and_style_content_and_entities_unescaped():
    cleaned = clean_text(HTML_PAGE, DEFAULTS)
    assert cleaned == "loved it & more — <b>raw</b> ☺ end"
    assert clean_text("<p>one</p><p>two</p>", DEFAULTS) == "one two"


def test_strip_html_keeps_text_that_only_looks_like_markup():
    assert strip_html("I <3 it, 2 < 3 > 1") == "I <3 it, 2 < 3 > 1"
    assert strip_html("<<<a<b") == "<<<a<b"


def test_unclosed_comment_or_script_hides_the_rest_as_a_browser_would():
    assert strip_html("kept <!-- open comment") == "kept  "
    assert strip_html("kept <script>alert(1) and more") == "kept  "


def test_strip_html_off_keeps_tags_and_entities():
    cfg = text_config("text.strip_html=false")
    assert clean_text("<b>Bold</b> &amp;", cfg) == "<b>bold</b> &amp;"


def test_urls_emails_and_mentions_become_tokens():
    text = ("See https://example.com/a?b=1, WWW.Example.org. Mail me.you+x@mail.example.co.uk or "
            "(@critic_42)! http://user@host.example/p stays one url; a@b is no address")
    assert clean_text(text, DEFAULTS) == ("see xxurl, xxurl. mail xxemail or (xxuser)! xxurl "
                                          "stays one url; a@b is no address")


def test_an_empty_token_keeps_the_original():
    cfg = text_config("text.url_token=", "text.email_token=", "text.mention_token=")
    text = "https://x.example/@y and z@example.com and @who"
    assert clean_text(text, cfg) == text
    cfg = text_config("text.url_token=", "text.lowercase=false")
    assert clean_text("At https://x.example/@y, @Who", cfg) == "At https://x.example/@y, xxuser"


def test_emoji_sequences_stay_intact():
    text = f"{FAMILY} {RAINBOW_FLAG} {HEART} {THUMBS_UP}"
    assert clean_text(text, DEFAULTS) == text
    assert "\u200d" in clean_text(FAMILY, DEFAULTS)


@pytest.mark.parametrize("text", [
    "这部电影非常好看。",
    "ストーリーも最高でした。",
    "정말 재미있는 영화예요.",
    "فيلم رائع جدا، أنصح بمشاهدته",
    "הסרט היה ארוך מדי",
    "این فیلم را دوباره می\u200cبینم",  # ZWNJ joins the Persian prefix without a ligature
    "\u0915\u094d\u200d\u0937",  # ka, virama, ZWJ, ssa: the ZWJ requests the half form
])
def test_cjk_and_right_to_left_scripts_are_kept(text):
    assert clean_text(text, DEFAULTS) == text


def test_bidi_marks_and_other_format_characters_are_dropped():
    text = ("\u200f\u061cمرحبا\u200e \u202aa\u202c \u2066b\u2069 zero\u200bwidth soft\u00adhyphen "
            "\ufeffbom word\u2060joiner flag\U000e0067\U000e007f")
    assert clean_text(text, DEFAULTS) == "مرحبا a b zerowidth softhyphen bom wordjoiner flag"


def test_controls_and_lone_surrogates_are_dropped():
    assert clean_text("bell\x07 esc\x1b[0m del\x7f nul\x00 lone\ud800", DEFAULTS) == (
        "bell esc[0m del nul lone")


def test_whitespace_runs_collapse_to_one_space():
    text = " a\r\n\r\nb\tc\u00a0d\u2003e\u2028f\x85g\x0b\x0ch\x1ci  \n"
    assert clean_text(text, DEFAULTS) == "a b c d e f g h i"


def test_nfkc_and_apostrophes():
    assert clean_text("Ｆｕｌｌ ﬁne ①", DEFAULTS) == "full fine 1"
    assert clean_text("There’s ‘quoted’", DEFAULTS) == "there's 'quoted'"


def test_lowercase_uses_lower_not_casefold():
    assert clean_text("ÀLLO Straße ΣΟΦΟΣ", DEFAULTS) == "àllo straße σοφος"
    assert clean_text("ÀLLO Straße", text_config("text.lowercase=false")) == "ÀLLO Straße"


@pytest.mark.timeout(120)  # a quadratic regex would take hours on these, not seconds
@pytest.mark.parametrize("text", [
    "word " * 1_000_000,
    "<" * 1_000_000,
    "<a" * 500_000,
    "<!--" * 250_000,
    "<script " * 125_000,
    "a" * 1_000_000 + "@",
    "a@" + "b" * 1_000_000,
    "a." * 500_000 + "@b",
    "@" * 1_000_000,
    "http://" * 150_000,
    "&#" + "0" * 1_000_000 + "65;",
    "&#" + "9" * 1_000_000,
], ids=["words", "lt", "tag-starts", "comments", "scripts", "word-run", "domain-run",
        "dotted-run", "ats", "schemes", "zero-padded-entity", "huge-entity"])
def test_long_single_lines_complete(text):
    cleaned = clean_text(text, DEFAULTS)
    assert cleaned == " ".join(cleaned.split())  # one line, single spaces


def test_huge_numeric_entities_unescape_as_html_does():
    assert strip_html("&#" + "0" * 10_000 + "65;") == "A"
    assert strip_html("&#99999999;|&#" + "9" * 5000) == "\ufffd|\ufffd"


# --- labels, lengths, hashes -------------------------------------------------------------


def test_labels_are_trimmed_and_case_folded():
    assert normalise_label("  Pos \n", DEFAULTS) == "pos"
    assert normalise_label("STRASSE", DEFAULTS) == normalise_label("Straße", DEFAULTS)
    decomposed = unicodedata.normalize("NFD", "Négatif")  # as macOS stores folder names
    assert normalise_label(decomposed, DEFAULTS) == "négatif"


def test_integer_labels_count_by_their_decimal_form():
    assert normalise_label(7, DEFAULTS) == "7"


@pytest.mark.parametrize("raw", [None, "", "  \t", 1.5, True, ["pos"]])
def test_missing_or_non_string_labels_are_rejected(raw):
    assert _rejected(normalise_label, raw, DEFAULTS).reason == "missing_label"


def test_configured_labels_reject_others():
    cfg = text_config("text.labels=[POS, neg]")
    assert normalise_label("pos", cfg) == "pos"
    assert normalise_label(" NEG", cfg) == "neg"
    rejected = _rejected(normalise_label, "neutral", cfg)
    assert rejected.reason == "unknown_label" and "neg, pos" in rejected.detail


def test_length_filters_count_characters_of_the_cleaned_text():
    cfg = text_config("text.min_chars=3", "text.max_chars=5")
    assert _rejected(check_length, "", cfg).reason == "empty_text"
    assert _rejected(check_length, "ab", cfg).reason == "too_short"
    assert _rejected(check_length, "abcdef", cfg).reason == "too_long"
    for ok in ("abc", "abcde", "日本語です"):
        check_length(ok, cfg)


def test_text_hash_is_sha256_of_the_utf8():
    assert text_hash("café") == hashlib.sha256("café".encode()).hexdigest()
    assert text_hash("a b") != text_hash("a  b")


# --- records -----------------------------------------------------------------------------


def test_accepted_record_has_split_text_hash_and_token_count():
    record = clean_text_document("file:/r/pos/a.txt", None, b"Hello,   World! It's\x00 fine.",
                                 " POS", DEFAULTS, RATIOS)
    assert record.reason is None and record.label_name == "pos"
    assert record.text == "hello, world! it's fine."
    assert record.content_hash == text_hash(record.text)
    assert record.split in RATIOS and record.n_tokens == 4
    assert clean_text_document("x", 3, record.text, "pos", DEFAULTS, RATIOS)[2:7] == record[2:7]


def test_str_text_skips_decoding_but_loses_its_nuls():
    record = clean_text_document("rows.csv", 2, "a\x00b c", "neg", DEFAULTS, RATIOS)
    assert (record.line, record.text, record.reason) == (2, "ab c", None)
    assert clean_text_document("s", 1, bytearray(b"a b"), "neg", DEFAULTS, RATIOS).text == "a b"


@pytest.mark.parametrize(("raw", "reason"), [
    (None, "missing_text"), (42, "text_not_string"), (4.2, "text_not_string"),
    (["a"], "text_not_string"), ({"text": "a"}, "text_not_string"), ("   ", "empty_text"),
    (b"", "empty_text"), ("<p></p>", "empty_text"),
])
def test_text_that_is_not_usable_is_rejected_keeping_the_label(raw, reason):
    record = clean_text_document("rows.jsonl", 5, raw, "Pos", DEFAULTS, RATIOS)
    assert (record.reason, record.label_name, record.split, record.text) == (
        reason, "pos", None, None)


def test_document_text_decodes_bytes_and_passes_strings_through():
    assert document_text(memoryview(b"caf\xc3\xa9"), DEFAULTS) == ("café", "utf-8")
    assert document_text(b"caf\xe9", DEFAULTS) == ("café", "latin-1")  # the fallback
    assert document_text(b"\xff\xfec\x00", DEFAULTS) == ("c", "utf-16-le bom")
    # cleaning comes next
    assert document_text("  as is\x00 ", DEFAULTS) == ("  as is\x00 ", "string")
    assert _rejected(document_text, None, DEFAULTS).reason == "missing_text"
    assert _rejected(document_text, True, DEFAULTS).reason == "text_not_string"


def test_label_is_checked_before_the_text():
    record = clean_text_document("rows.jsonl", 7, None, None, DEFAULTS, RATIOS)
    assert (record.reason, record.label_name) == ("missing_label", None)


def test_length_limits_apply_to_records():
    cfg = text_config("text.min_chars=10", "text.max_chars=20")
    short = clean_text_document("s", None, b"tiny", "pos", cfg, RATIOS)
    long = clean_text_document("s", None, b"x" * 21, "pos", cfg, RATIOS)
    assert (short.reason, long.reason) == ("too_short", "too_long")
    assert "10" in short.detail and "20" in long.detail


def test_clean_text_document_never_raises(monkeypatch):
    def broken(text, cfg):
        raise IndexError("cleaning bug")

    monkeypatch.setattr(text_records, "clean_text", broken)
    record = clean_text_document("s", 1, b"fine text", "pos", DEFAULTS, RATIOS)
    assert (record.reason, record.detail, record.label_name) == (
        "unexpected_error", "IndexError: cleaning bug", "pos")


# --- the corpus --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("text_corpus")
    return root, write_text_corpus(root)


def _records(root, cfg: TextConfig) -> dict[str, TextRecord]:
    """Every key of the corpus -> its record, found and parsed as the ingest job does."""
    records = {}
    uri = f"file:{root / 'folders'}"
    for path in sorted((root / "folders").rglob("*.txt")):
        key = path.relative_to(root).as_posix()
        data = path.read_bytes()
        found = classify_folder_file(f"{uri}/{key.removeprefix('folders/')}", len(data), uri)
        if found.reason is not None:
            records[key] = TextRecord(key, None, found.label, *[None] * 4, found.reason,
                                      found.detail)
        else:
            records[key] = clean_text_document(key, None, data, found.label, cfg, RATIOS)
    for name, fmt in (("reviews.csv", "csv"), ("reviews.jsonl", "jsonl")):
        for row in file_rows(name, (root / name).read_bytes(), fmt, "text", "label", cfg):
            if isinstance(row, TextRecord) and row.blank_lines:
                continue  # the tally of blank lines: no input
            key = f"{name}:{row.line}"
            if isinstance(row, TextRecord):
                records[key] = row
            else:
                records[key] = clean_text_document(*row, cfg, RATIOS)
    return records


@pytest.fixture(scope="module")
def corpus_records(corpus):
    root, _ = corpus
    return _records(root, DEFAULTS)


def _per_record(expected: str) -> str:
    """Outcome of one document on its own: dedup and label conflicts are decided by Spark."""
    grouped = expected.startswith(("duplicate_group:", "near_duplicate_group:"))
    return "accepted" if grouped or expected == "conflicting_labels" else expected


def test_every_corpus_document_gets_its_expected_outcome(corpus, corpus_records):
    _, expected = corpus
    got = {key: record.reason or "accepted" for key, record in corpus_records.items()}
    assert got == {key: _per_record(outcome) for key, outcome in expected.items()}
    for key, record in corpus_records.items():
        if key.startswith("folders/") and record.reason is None:
            assert record.label_name == key.split("/")[1]


def test_strict_decoding_makes_the_latin1_and_invalid_files_undecodable(corpus):
    root, expected = corpus
    records = _records(root, STRICT)
    got = {key: record.reason or "accepted" for key, record in records.items()}
    assert got == {key: _per_record(outcome)
                   for key, outcome in (expected | STRICT_DECODING_OUTCOMES).items()}
    assert "byte offset 2 (0xe8" in records["folders/pos/latin1.txt"].detail  # Crè


def test_corpus_documents_are_cleaned_as_intended(corpus_records):
    text = {key: record.text for key, record in corpus_records.items()}
    assert text["folders/pos/html.txt"] == "review loved it & would watch again — 10/10 <3"
    assert text["folders/pos/nul_bytes.txt"] == (
        "subtitles were out of sync but the story held up.")
    assert text["folders/pos/crlf.txt"] == ("first line of a review written on windows. second "
                                            "line: the pacing drags. verdict: worth it.")
    assert text["folders/pos/urls_emails_mentions.txt"] == (
        "trailer at xxurl, questions to xxemail, shout-out to xxuser and xxurl.")
    assert text["folders/pos/invisible.txt"] == (
        "zerowidth joins, softhyphen, a bell, an escape [0m code and a right-to-left override "
        "too.")
    assert all(emoji in text["folders/pos/emoji_zwj.txt"]
               for emoji in (FAMILY, RAINBOW_FLAG, HEART, THUMBS_UP))
    rtl = text["folders/pos/arabic_persian_rtl.txt"]
    assert "\u200f" not in rtl and "\u200c" in rtl and rtl.startswith("فيلم")
    assert text["folders/neg/utf16_le_no_bom.txt"] == "dull and lifeless, ninety minutes wasted."
    assert text["reviews.csv:3"] == 'quoted, with a comma and "double quotes" inside'
    assert text["reviews.csv:4"] == "spans two lines: the second line is still the same review"
    assert corpus_records["reviews.csv:10"].label_name == "pos"
    assert text["reviews.jsonl:10"] == "an escaped lone surrogate and a clapper 🎬 survive."
    assert corpus_records[LONG_LINE].detail.endswith("above text.max_chars 100000")


def test_corpus_shares_text_only_where_intended(corpus, corpus_records):
    _, expected = corpus
    by_hash, by_intent = defaultdict(set), defaultdict(set)
    for key, record in corpus_records.items():
        if record.reason is None:
            by_hash[record.content_hash].add(key)
            grouped = expected[key].startswith("duplicate_group:")
            by_intent[expected[key] if grouped or expected[key] == "conflicting_labels"
                      else key].add(key)
    assert sorted(map(sorted, by_hash.values())) == sorted(map(sorted, by_intent.values()))
    assert len(by_intent["duplicate_group:encodings"]) == 5
    labels = {corpus_records[key].label_name for key in by_intent["conflicting_labels"]}
    assert labels == {"pos", "neg"}


def test_corpus_has_near_duplicates_only_where_intended(corpus, corpus_records):
    """Exact Jaccard over the shingles the job's MinHash sees, one document per hash."""
    _, expected = corpus
    shingles, seen = {}, set()
    for key, record in sorted(corpus_records.items()):
        if record.reason is None and record.content_hash not in seen:
            seen.add(record.content_hash)
            tokens = tokenize(record.text, DEFAULTS.token_pattern)
            shingles[key] = set(shingle_hashes(tokens, DEFAULTS.shingle_size).tolist())
    similar = {(a, b) for a, b in combinations(sorted(shingles), 2)
               if len(shingles[a] & shingles[b]) / len(shingles[a] | shingles[b])
               >= DEFAULTS.near_duplicate_jaccard}
    intended = sorted(key for key, outcome in expected.items()
                      if outcome.startswith("near_duplicate_group:"))
    assert similar == {tuple(intended)} and len(intended) == 2


def test_corpus_is_small_and_covers_every_outcome(corpus):
    root, expected = corpus
    files = [path for path in root.rglob("*") if path.is_file()]
    documents = {key.split(":")[0] for key in expected}
    assert sorted(path.relative_to(root).as_posix() for path in files) == sorted(documents)
    assert len(expected) <= 60
    assert sum(path.stat().st_size for path in files) < 6_000_000
    long_line = (root / LONG_LINE).read_bytes()
    assert len(long_line) == LONG_LINE_BYTES and len(long_line.splitlines()) == 1
    outcomes = {_per_record(outcome) for outcome in expected.values()}
    assert outcomes == {"accepted", "empty_file", "empty_text", "too_long", "malformed_row",
                        "missing_label", "missing_text", "text_not_string"}
    kinds = {outcome.split(":")[0] for outcome in expected.values()}
    assert {"duplicate_group", "near_duplicate_group", "conflicting_labels"} <= kinds


def test_a_document_without_tokens_is_quarantined():
    record = clean_text_document("f.txt", None, "!!! ??? ...", "pos", DEFAULTS, RATIOS)
    assert (record.reason, record.label_name, record.split) == ("no_tokens", "pos", None)


def test_jsonl_lines_end_at_newline_only():
    rows = list(jsonl_rows('{"text": "a\u2028b", "label": "x"}\r\n{"text": "c", "label": "y"}\n',
                           ("text", "label")))
    assert rows == [(1, ("a\u2028b", "x"), None), (2, ("c", "y"), None)]


def _rows(data: str, fmt: str) -> list[tuple]:
    """(line, reason or 'row', detail or (text, label)) of a data file, as the job reads it."""
    return [(r.line, r.reason, r.detail) if isinstance(r, TextRecord) else (r.line, "row",
                                                                             (r.text, r.label))
            for r in file_rows("f", data.encode(), fmt, "text", "label", DEFAULTS)]


def test_jsonl_rows_survive_huge_numbers_and_deep_nesting():
    content = '{"text": "x", "label": ' + "1" * 5000 + "}\n" + "[" * 100000 + "\n"
    assert [reason for _, reason, _ in _rows(content, "jsonl")] == ["malformed_row"] * 2


def test_csv_rows_name_their_starting_line_and_every_malformed_one():
    content = ('text,label\n"two\nlines",pos\n\nshort\na,b,c\n"x",neg\n')
    assert _rows(content, "csv") == [
        (2, "row", ("two\nlines", "pos")),
        (5, "malformed_row", "line 5: 1 fields, the header has 2"),
        (6, "malformed_row", "line 6: 3 fields, the header has 2"),
        (7, "row", ("x", "neg")),
    ]


def test_a_csv_without_the_columns_is_one_bad_header_and_an_undecodable_file_one_record():
    (row,) = _rows("review,label\nfine,pos\n", "csv")
    assert row == (1, "bad_header", "the header ['review', 'label'] lacks column text")
    (whole,) = [(r.line, r.reason) for r in file_rows("f", b"\xff\xfe\x00", "csv", "text",
                                                        "label", STRICT)]
    assert whole == (None, "undecodable")


def test_ranges_give_every_core_several_tasks_within_bounds():
    mib = 1 << 20
    assert range_bytes(130 * mib, 2) == -(-130 * mib // 8)  # four per core
    assert range_bytes(4 * mib, 2) == mib  # never under MIN_SPLIT_BYTES
    assert range_bytes(100_000 * mib, 2) == SPLIT_BYTES  # never over the largest
    assert range_bytes(130 * mib, 2, largest=200) == 200  # the largest wins


def test_row_groups_are_sliced_when_fewer_than_the_tasks_wanted():
    one = RowGroup("s3://b/t.parquet", 0, 1, 10)
    slices = row_slices([one], 4)
    assert [(s.first_line, s.rows, s.skip) for s in slices] == [(1, 3, 0), (4, 3, 3),
                                                                (7, 3, 6), (10, 1, 9)]
    many = [RowGroup("f", i, 1 + 5 * i, 5) for i in range(4)]
    assert row_slices(many, 4) == many
    assert row_slices([RowGroup("f", 0, 1, 0)], 4) == [RowGroup("f", 0, 1, 0)]
