"""Is a text file text? Content, not the extension, decides: ``binary_content`` is an image, an
archive, an executable or random bytes under a ``.txt`` (or ``.csv``, ``.jsonl``) name.

The rule (README, Text ingest), cheap and deterministic in the bytes:

1. a known signature at byte 0 (``SIGNATURES``: images, archives and compressed streams,
   executables, document and data containers) is binary, whatever follows;
2. else, after decoding (a latin-1 fallback maps every byte to a character) and dropping NULs
   (UTF-16 without a byte-order mark, a crash's NUL padding), more than ``MAX_CONTROL_SHARE`` of
   the characters are C0 controls other than tab, newline, vertical tab, form feed and
   carriage return (U+0001-U+0008, U+000E-U+001F, U+007F): compressed or random bytes give about
   10.6% of them, text almost none. C1 controls are not counted (cp1252 text read as latin-1
   holds them for its quotes and dashes), nor is U+FFFD (``on_decode_error: replace`` asked to
   keep bad sequences). A file with nothing else (only controls and whitespace) is left to the
   cleaning, which finds it ``empty_text``.

Plain Python, standard library only: the per-document cleaning and the JSONL range scan (which
adds up the counts of each range) share it.
"""

from __future__ import annotations

# (offset, signature, what it is). ASCII-only signatures are long enough not to start a text.
SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"GIF87a", "a GIF image"),
    (0, b"GIF89a", "a GIF image"),
    (0, b"II*\x00", "a TIFF image"),
    (0, b"MM\x00*", "a TIFF image"),
    (0, b"\x00\x00\x01\x00", "an ICO image"),
    (0, b"8BPS\x00", "a Photoshop image"),
    (0, b"\x1aE\xdf\xa3", "a Matroska/WebM video"),
    (0, b"OggS\x00", "an Ogg stream"),
    (0, b"fLaC", "a FLAC stream"),
    (0, b"ID3\x03\x00", "an MP3 file"),
    (0, b"ID3\x04\x00", "an MP3 file"),
    (0, b"PK\x03\x04", "a ZIP archive (or docx, xlsx, jar, ...)"),
    (0, b"PK\x05\x06", "an empty ZIP archive"),
    (0, b"\x1f\x8b\x08", "a gzip stream"),
    (0, b"BZh", "a bzip2 stream"),  # checked with its block magic in ``_bzip2``
    (0, b"\xfd7zXZ\x00", "an xz stream"),
    (0, b"(\xb5/\xfd", "a zstd stream"),
    (0, b"\x04\x22\x4d\x18", "an LZ4 frame"),
    (0, b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (0, b"Rar!\x1a\x07", "a RAR archive"),
    (257, b"ustar", "a tar archive"),
    (0, b"\x7fELF", "an ELF executable"),
    (0, b"MZ\x90\x00", "a Windows executable"),
    (0, b"\xcf\xfa\xed\xfe", "a Mach-O executable"),
    (0, b"\xce\xfa\xed\xfe", "a Mach-O executable"),
    (0, b"\xca\xfe\xba\xbe", "a Mach-O universal binary or Java class"),
    (0, b"\x00asm", "a WebAssembly module"),
    (0, b"%PDF-", "a PDF document"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an OLE2 document (doc, xls, msi)"),
    (0, b"SQLite format 3\x00", "an SQLite database"),
    (0, b"PAR1", "a Parquet file"),
    (0, b"ARROW1", "an Arrow file"),
    (0, b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
    (0, b"\x93NUMPY", "a NumPy array"),
)
_RIFF = {b"WEBP": "a WebP image", b"WAVE": "a WAV sound", b"AVI ": "an AVI video"}
MAX_CONTROL_SHARE = 0.05
# the C0 controls text does not use (NUL is dropped before counting): 27 of 255 byte values
_DELETE_CONTROLS = dict.fromkeys([*range(0x01, 0x09), *range(0x0E, 0x20), 0x7F])


def signature(data: bytes) -> str | None:
    """What binary format ``data`` starts with (e.g. "a PNG image"), or None."""
    for offset, magic, name in SIGNATURES:
        if data.startswith(magic, offset) and (magic != b"BZh" or _bzip2(data)):
            return name
    if data.startswith(b"RIFF") and data[8:12] in _RIFF:
        return _RIFF[data[8:12]]
    if data[:1] == b"\x00" and data[4:8] == b"ftyp":  # an ISO-BMFF box: size, then type
        return "an MP4/HEIF/AVIF file"
    return None


def _bzip2(data: bytes) -> bool:
    """``BZh`` + a block size digit + the block magic (pi's digits): "BZh..." text is not."""
    return data[3:4].isdigit() and data[4:10] in (b"1AY&SY", b"\x17rE8P\x90")


def count_controls(text: str) -> int:
    """The C0 control characters of the rule (not whitespace, not NUL) in ``text``."""
    return len(text) - len(text.translate(_DELETE_CONTROLS))


def has_visible(text: str) -> bool:
    """Anything but controls and whitespace: a text of only those is empty, not binary."""
    return bool(text.translate(_DELETE_CONTROLS).strip())


def too_many_controls(controls: int, chars: int) -> bool:
    """The share rule over a text (or the sum over a file's ranges) of ``chars`` characters."""
    return chars > 0 and controls > MAX_CONTROL_SHARE * chars


def describe_signature(name: str) -> str:
    """The ``binary_content`` detail of the signature rule."""
    return f"{name} (by its first bytes), not text"


def describe_controls(controls: int, chars: int) -> str:
    """The ``binary_content`` detail of the share rule."""
    return (f"{controls} of {chars} characters ({controls / chars:.1%}) are control characters; "
            f"text has at most {MAX_CONTROL_SHARE:.0%}")
