"""Per-document text cleaning, plain Python: decode safely, normalise, check label and length.

No Spark here: the ingest job maps these over raw documents and rows, and inference reuses
them so that serving sees exactly the text training saw. Every option comes from
``TextConfig`` (the ``text:`` section of the configuration). Every function is linear in the
length of its input: a 5 MB single-line document costs seconds at worst, never hours.
"""

from __future__ import annotations

import codecs
import hashlib
import html
import re
import unicodedata

from pipeline.config import TextConfig
from pipeline.datasets.reasons import Reason
from pipeline.ingest import sniff
from pipeline.ingest.rejection import Rejected

# A byte order mark declares the encoding: no fallback is tried when its codec fails.
# UTF-32 comes first because its little-endian BOM starts with UTF-16's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# Script and style content is code, not text; comments are hidden. Found with one
# left-to-right scan (see ``_drop_hidden``), never with a lazy ``.*?`` that could go quadratic.
_HIDDEN_OPEN = re.compile(r"<!--|<(script|style)\b", re.IGNORECASE)
_HIDDEN_CLOSE = {
    "script": re.compile(r"</script\s*>", re.IGNORECASE),
    "style": re.compile(r"</style\s*>", re.IGNORECASE),
}
# A tag starts with a letter, '/', '!' or '?' ("I <3 it" is text) and holds no '<' or '>':
# excluding '<' bounds every failed attempt by the next '<', so the scan stays linear.
_TAG = re.compile(r"<[A-Za-z/!?][^<>]*>")
# One pass, leftmost match wins: a URL swallows any '@' inside it, an e-mail address its '@'.
# The e-mail's local part must start a run (the lookbehind), so a long run of word characters
# is scanned once, not once per position.
_REPLACEABLE = re.compile(
    r"(?P<url>\b(?:https?://|www\.)\S+)"
    r"|(?P<email>(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+)"
    r"|(?P<mention>(?<![\w@])@\w+)",
    re.IGNORECASE,
)
# html.unescape calls int() on decimal references, which refuses more than 4300 digits: a
# reference of 8 digits or more (after leading zeros) is past U+10FFFF, so it is shortened to
# the first invalid code point, which unescape turns into U+FFFD as it would the original.
_SURROGATE = re.compile("[\ud800-\udfff]")
_LONG_DECIMAL_REF = re.compile(r"&#([0-9]{8,})")
# Sentence punctuation after a URL is not part of it: "see www.example.com." keeps its ".".
_URL_TRAILING = ".,;:!?)]}'\""
# Typographic apostrophes become ASCII so that "there’s" and "there's" tokenise alike under
# the default ``[\w']+`` pattern (NFKC leaves U+2018/U+2019 alone).
_APOSTROPHES = str.maketrans({"\u2018": "'", "\u2019": "'"})
# Format characters kept: ZWNJ and ZWJ change how Persian and Indic words and emoji sequences
# render (man ZWJ woman ZWJ girl is one family glyph). Every other Cf goes: zero-width space, soft
# hyphen, BOM, word joiner, tag characters, and the bidirectional marks, embeddings, overrides
# and isolates (LRM, RLM, ALM, U+202A-U+202E, U+2066-U+2069): text is stored in logical order,
# so they only steer display, and they would make identical words hash and tokenise apart.
_KEPT_FORMAT = frozenset("\u200c\u200d")


def decode_text(data: bytes, cfg: TextConfig) -> str:
    """Raw bytes -> text without NUL characters; raises ``Rejected`` (see ``decode_document``)."""
    return decode_document(data, cfg)[0]


def decode_document(data: bytes, cfg: TextConfig) -> tuple[str, str]:
    """Raw bytes -> (text without NUL characters, the encoding that decoded it); raises
    ``Rejected``.

    A BOM decides: UTF-8, UTF-16 or UTF-32, either byte order. Without one, strict UTF-8, then
    ``cfg.fallback_encoding``, also strict. The default latin-1 maps every byte to a character,
    so it never fails and ``undecodable`` needs a fallback that can (utf-8, cp1252,
    shift_jis, ...). When nothing decodes, ``on_decode_error: replace`` decodes as UTF-8 (or
    the BOM's codec) with U+FFFD for each bad sequence; ``quarantine`` rejects the document.
    UTF-16 without a BOM is read as UTF-8: ASCII-range text survives, as its NULs are dropped.
    Bytes that are not text (a known binary signature, or too many control characters once
    decoded: see ``sniff``) are ``binary_content``, never accepted through the fallback.
    """
    found = sniff.signature(data)
    if found is not None:
        raise Rejected(Reason.BINARY_CONTENT, sniff.describe_signature(found))
    text, encoding = _decode(data, cfg)
    text = text.replace("\x00", "")
    if not text.strip():
        detail = "the file has no bytes" if not data else "only whitespace or NUL characters"
        raise Rejected(Reason.EMPTY_TEXT, detail)
    controls = sniff.count_controls(text)
    if sniff.too_many_controls(controls, len(text)) and sniff.has_visible(text):
        raise Rejected(Reason.BINARY_CONTENT, sniff.describe_controls(controls, len(text)))
    return text, encoding


def _decode(data: bytes, cfg: TextConfig) -> tuple[str, str]:
    """(text, encoding): a BOM's codec (``utf-16-le bom``), ``utf-8``, the fallback's name, or
    ``utf-8 replaced`` when bad sequences became U+FFFD."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return _strict_or_replace(data[len(bom):], codec, len(bom), cfg)
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        utf8_error = exc
    fallback = cfg.fallback_encoding
    also_utf8 = codecs.lookup(fallback).name == "utf-8"
    if not also_utf8:
        try:
            return data.decode(fallback), fallback
        except UnicodeDecodeError:
            pass
    if cfg.on_decode_error == "replace":
        return data.decode("utf-8", errors="replace"), "utf-8 replaced"
    tried = "text.fallback_encoding is UTF-8 too" if also_utf8 else (
        f"not {fallback} either (text.fallback_encoding)")
    raise Rejected(Reason.UNDECODABLE, f"{_describe(utf8_error, 0, 'UTF-8')}; {tried}")


def _strict_or_replace(data: bytes, codec: str, offset: int, cfg: TextConfig
                       ) -> tuple[str, str]:
    try:
        return data.decode(codec), f"{codec} bom"
    except UnicodeDecodeError as exc:
        if cfg.on_decode_error == "replace":
            return data.decode(codec, errors="replace"), f"{codec} bom replaced"
        raise Rejected(Reason.UNDECODABLE,
                       f"{_describe(exc, offset, codec)} after its BOM") from None


def _describe(exc: UnicodeDecodeError, offset: int, codec: str) -> str:
    """'invalid UTF-8 at byte offset 12 (0xff: invalid start byte)', counted from byte 0."""
    bad = exc.object[exc.start:exc.end]
    return f"invalid {codec} at byte offset {exc.start + offset} (0x{bad.hex()}: {exc.reason})"


def clean_text(text: str, cfg: TextConfig) -> str:
    """Decoded text -> the text a model sees: one line, normalised, markup and noise removed.

    In order: HTML stripped (``strip_html``), Unicode NFKC, typographic apostrophes made ASCII,
    control and format characters dropped (see ``_KEPT_FORMAT``), lower-cased (``lowercase``),
    URLs, e-mail addresses and @mentions replaced by their tokens, whitespace runs collapsed to
    one space. ``str.lower`` rather than ``casefold``: casefold rewrites words (ß -> ss, final
    ς -> σ) to compare them, and the cleaned text is also what people read in the dataset.
    """
    if cfg.strip_html:
        text = strip_html(text)
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)
    text = _drop_invisible(text)
    if cfg.lowercase:
        text = text.lower()
    text = _replace_identifiers(text, cfg)
    return " ".join(text.split())


def strip_html(text: str) -> str:
    """Comments, ``<script>`` and ``<style>`` elements and tags dropped; entities unescaped.

    Tags become a space (``<p>a</p><p>b</p>`` is two words). Entities are unescaped last, so
    ``&lt;b&gt;`` stays visible text. An unclosed comment or script hides the rest of the
    document, as it does in a browser.
    """
    text = _LONG_DECIMAL_REF.sub(_shorten_reference, _TAG.sub(" ", _drop_hidden(text)))
    return html.unescape(text)


def _shorten_reference(match: re.Match[str]) -> str:
    digits = match.group(1).lstrip("0") or "0"
    return "&#" + (digits if len(digits) < 8 else str(0x110000))


def _drop_hidden(text: str) -> str:
    """Comments and script/style elements removed in one scan from left to right."""
    parts, position = [], 0
    while (opened := _HIDDEN_OPEN.search(text, position)) is not None:
        parts += [text[position:opened.start()], " "]
        if opened.group(1) is None:
            end = text.find("-->", opened.end())
            position = end + 3 if end >= 0 else len(text)
        else:
            closed = _HIDDEN_CLOSE[opened.group(1).lower()].search(text, opened.end())
            position = closed.end() if closed is not None else len(text)
    parts.append(text[position:])
    return "".join(parts)


def _invisible(char: str) -> bool:
    category = unicodedata.category(char)
    if category == "Cc":
        return not char.isspace()  # tabs, newlines, NEL, ... are collapsed as whitespace
    return category == "Cs" or (category == "Cf" and char not in _KEPT_FORMAT)


_ASCII_INVISIBLE = {code: None for code in range(128) if _invisible(chr(code))}


def _drop_invisible(text: str) -> str:
    """Control, format and lone-surrogate characters removed (surrogates come from JSON
    escapes like ``"\\ud800"``; they cannot be encoded as UTF-8, hashed or stored)."""
    if text.isascii():  # the usual case: only ASCII controls to look for
        return text.translate(_ASCII_INVISIBLE) if not text.isprintable() else text
    table = {ord(char): None for char in set(text) if _invisible(char)}
    return text.translate(table) if table else text


def _replace_identifiers(text: str, cfg: TextConfig) -> str:
    """URLs, e-mail addresses and @mentions -> their configured tokens; an empty token keeps."""
    tokens = {"url": cfg.url_token, "email": cfg.email_token, "mention": cfg.mention_token}
    if not any(tokens.values()):
        return text

    def replace(match: re.Match[str]) -> str:
        found = match.group()
        token = tokens[match.lastgroup]
        if not token:
            return found
        if match.lastgroup == "url":
            url = found.rstrip(_URL_TRAILING)
            return token + found[len(url):]
        return token

    return _REPLACEABLE.sub(replace, text)


def normalise_label(raw: object, cfg: TextConfig) -> str:
    """A raw label -> its canonical form (NFKC, trimmed, case-folded); raises ``Rejected``.

    NFKC makes a folder name stored decomposed (macOS) equal the same label typed in a CSV.
    Integers (JSON ``1``, an int Parquet column) are labels by their decimal form; other
    non-strings (floats, lists, booleans) are ``missing_label``, not guessed at.
    """
    if raw is None:
        raise Rejected(Reason.MISSING_LABEL, "the document has no label")
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str):
        raise Rejected(Reason.MISSING_LABEL,
                       f"the label is not a string: {type(raw).__name__} {raw!r:.40}")
    label = _canonical(raw)
    if not label:
        raise Rejected(Reason.MISSING_LABEL, "the label is empty")
    if _SURROGATE.search(label):  # a JSON escape like "\ud800": no UTF-8 can hold it
        raise Rejected(Reason.MISSING_LABEL, f"the label is not valid Unicode: {label!r:.40}")
    allowed = {_canonical(name) for name in cfg.labels}
    if allowed and label not in allowed:
        raise Rejected(Reason.UNKNOWN_LABEL, f"label {label!r} is not one of text.labels: "
                                             f"{', '.join(sorted(allowed))}")
    return label


def _canonical(label: str) -> str:
    return unicodedata.normalize("NFKC", label).strip().casefold()


def check_length(cleaned: str, cfg: TextConfig) -> None:
    """Raise ``Rejected`` when the cleaned text is empty, too short or too long.

    Lengths are in characters (code points) of the cleaned text: an emoji family counts 7.
    """
    if not cleaned:
        raise Rejected(Reason.EMPTY_TEXT, "nothing is left after cleaning")
    length = len(cleaned)
    if length < cfg.min_chars:
        raise Rejected(Reason.TOO_SHORT, f"{length} characters after cleaning, "
                                         f"below text.min_chars {cfg.min_chars}")
    if length > cfg.max_chars:
        raise Rejected(Reason.TOO_LONG, f"{length} characters after cleaning, "
                                        f"above text.max_chars {cfg.max_chars}")


def text_hash(cleaned: str) -> str:
    """SHA-256 hex of the cleaned text's UTF-8: equal for documents that clean alike."""
    return hashlib.sha256(cleaned.encode("utf-8")).hexdigest()
