"""OpenCV's decode of JPEGs (the fast path) gives exactly Pillow's pixels, or leaves the file to
Pillow.

The content hash, and with it the split and the duplicates, is taken over the decoded pixels:
a file decoded by either path must give the same array, and a file Pillow refuses must not
be taken by OpenCV.
"""

from __future__ import annotations

import importlib.util
import io
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.config import load_config
from pipeline.ingest.images import decode_image, opencv_pixels
from pipeline.ingest.rejection import Rejected
from pipeline.samples.digits import load_digits
from tests.corpus import CORPUS_CONFIG_OVERRIDES, EXIF_ROTATED, write_image_corpus

COLOR_MODES = ("rgb", "grayscale")
PHOTOS = Path(importlib.util.find_spec("sklearn").origin).parent / "datasets" / "images"


@cache
def _config(color_mode: str):
    return load_config(overrides=[*CORPUS_CONFIG_OVERRIDES,
                                  f"images.color_mode={color_mode}"]).images


def _outcome(data: bytes, color_mode: str, opencv: bool):
    """(pixels, header) or the rejection's (reason, detail)."""
    try:
        pixels, original = decode_image(data, _config(color_mode), opencv=opencv)
    except Rejected as rejected:
        return rejected.reason, rejected.detail
    return pixels, original


def _assert_same(data: bytes, color_mode: str) -> None:
    fast, careful = _outcome(data, color_mode, True), _outcome(data, color_mode, False)
    if isinstance(careful[0], np.ndarray):
        assert isinstance(fast[0], np.ndarray), fast
        assert fast[0].dtype == careful[0].dtype == np.uint8
        np.testing.assert_array_equal(fast[0], careful[0])
        assert fast[1] == careful[1]
    else:
        assert not isinstance(fast[0], np.ndarray), f"OpenCV took what Pillow refuses: {careful}"
        assert fast == careful


def _taken(data: bytes, color_mode: str = "rgb") -> bool:
    """Whether OpenCV decodes the file (else Pillow does)."""
    return opencv_pixels(data, Image.open(io.BytesIO(data)), color_mode) is not None


def _encode(pixels: np.ndarray, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **params)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("corpus")
    return {name: (root / name).read_bytes() for name in write_image_corpus(root)}


@pytest.mark.parametrize("color_mode", COLOR_MODES)
def test_every_file_of_the_corpus_decodes_the_same_or_is_refused_the_same(corpus, color_mode):
    for name, data in corpus.items():
        try:
            _assert_same(data, color_mode)
        except AssertionError as failed:
            raise AssertionError(f"{name} ({color_mode}): {failed}") from None
    # the comparison is worth something only if OpenCV took the plain JPEGs
    taken = {name for name, data in corpus.items() if data and _is_image(data)
             and _taken(data, color_mode)}
    plain = {"dog/grayscale.jpg"} | ({"dog/my dog photo.jpg"} if color_mode == "rgb" else set())
    assert plain <= taken and all(name.endswith(".jpg") for name in taken), taken


def _is_image(data: bytes) -> bool:
    try:
        Image.open(io.BytesIO(data))
    except Exception:  # any file Pillow cannot even open: the corpus's non-images
        return False
    return True


@pytest.mark.parametrize("name", ["china.jpg", "flower.jpg"])
@pytest.mark.parametrize("color_mode", COLOR_MODES)
def test_real_camera_jpegs_decode_to_the_same_pixels(name, color_mode):
    data = (PHOTOS / name).read_bytes()
    assert _taken(data, color_mode) == (color_mode == "rgb")  # RGB -> gray is Pillow's luma
    _assert_same(data, color_mode)


def test_the_bundled_digits_as_jpeg_decode_to_the_same_pixels():
    images, _ = load_digits()
    for digit in images[:50]:
        data = _encode(digit, "JPEG", quality=90)
        assert _taken(data)
        for color_mode in COLOR_MODES:
            _assert_same(data, color_mode)


@settings(max_examples=60, deadline=None)
@given(height=st.integers(1, 70), width=st.integers(1, 70), gray=st.booleans(),
       seed=st.integers(0, 2**32 - 1), quality=st.integers(5, 100),
       subsampling=st.sampled_from([0, 1, 2]), progressive=st.booleans())
def test_any_jpeg_decodes_to_the_same_pixels(height, width, gray, seed, quality, subsampling,
                                             progressive):
    shape = (height, width) if gray else (height, width, 3)
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    data = _encode(pixels, "JPEG", quality=quality, subsampling=subsampling,
                   progressive=progressive)
    assert _taken(data)
    for color_mode in COLOR_MODES:
        _assert_same(data, color_mode)


@settings(max_examples=300, deadline=None)
@given(flips=st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(1, 255)),
                      min_size=1, max_size=3),
       progressive=st.booleans())
def test_a_jpeg_with_flipped_bytes_decodes_the_same_or_is_refused_the_same(flips, progressive):
    """Damage anywhere (header, tables, entropy-coded data, markers): OpenCV may only take a
    file Pillow accepts, and must then give its pixels."""
    data = bytearray(_photo_jpeg(progressive))
    for where, change in flips:
        data[int(where * len(data))] ^= change
    for color_mode in COLOR_MODES:
        _assert_same(bytes(data), color_mode)


@cache
def _photo_jpeg(progressive: bool) -> bytes:
    photo = np.asarray(Image.open(PHOTOS / "flower.jpg").convert("RGB"))[100:140, 200:248]
    return _encode(np.ascontiguousarray(photo), "JPEG", quality=85, progressive=progressive)


def _png_16_bit() -> bytes:
    ramp = (np.arange(64, dtype=np.uint16) * 1000).reshape(8, 8)
    return _encode(ramp, "PNG")


def _cmyk_jpeg(photo: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(photo).convert("CMYK").save(buffer, format="JPEG")
    return buffer.getvalue()


def test_what_opencv_would_decode_differently_is_left_to_pillow(corpus):
    photo = np.asarray(Image.open(PHOTOS / "china.jpg").convert("RGB"))[:160, :240].copy()
    jpeg = _encode(photo, "JPEG")
    left = {
        "truncated JPEG (OpenCV pads it with grey)": jpeg[: len(jpeg) * 2 // 3],
        "JPEG with bytes after its end": jpeg + b"\0trailing",
        # libjpeg fails on these after the last row; OpenCV would return the pixels
        "JPEG with a second start-of-image": jpeg[:-2] + b"\xff\xd8\xff\xd9",
        "JPEG with a frame header after its scan": jpeg[:-2] + b"\xff\xc0\x00\x02\xff\xd9",
        "JPEG with a scan header after its scan": jpeg[:-2] + b"\xff\xda\x00\x02\xff\xd9",
        "truncated JPEG with a whole one after it": jpeg[: len(jpeg) * 3 // 4] + jpeg,
        "JPEG without its end marker, another after it": jpeg[:-2] + jpeg,
        "8-bit RGB PNG (its orientation can be in text chunks)": _encode(photo, "PNG"),
        "EXIF rotation": corpus[EXIF_ROTATED],
        "CMYK JPEG": _cmyk_jpeg(photo),
        "16-bit PNG": _png_16_bit(),
        "PNG with transparency": _encode(photo[..., 0], "PNG", transparency=0),
        "palette PNG": _encode_palette(photo),
    }
    assert _taken(jpeg)
    for what, data in left.items():
        assert not _taken(data), what
        _assert_same(data, "rgb")
    for what in ("truncated JPEG (OpenCV pads it with grey)", "JPEG with a second start-of-image",
                 "JPEG with a frame header after its scan",
                 "JPEG with a scan header after its scan",
                 "truncated JPEG with a whole one after it",
                 "JPEG without its end marker, another after it"):
        assert _outcome(left[what], "rgb", True)[0] == "corrupt_image", what
    # a broken EXIF block: Pillow's reading of it decides, whole or truncated
    broken_exif = _encode(photo, "JPEG", exif=b"Exif\0\0JUNKJUNK", dpi=(72, 72))
    for data in (broken_exif, broken_exif[:-100]):
        _assert_same(data, "rgb")


def _encode_palette(photo: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(photo).convert("P", palette=Image.Palette.ADAPTIVE).save(buffer, "PNG")
    return buffer.getvalue()
