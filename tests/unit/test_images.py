"""Per-image cleaning on real digits and generated broken inputs, without Spark."""

import io

import numpy as np
import pytest
from PIL import Image

from pipeline.ingest.image_records import clean_image_file
from pipeline.ingest.images import (
    ImageSpec,
    decode_png,
    decode_rgb,
    encode_png,
    pixel_hash,
    prepare_image,
)
from pipeline.ingest.rejection import Rejected
from pipeline.samples.digits import load_digits

SPEC = ImageSpec(height=28, width=28, png_compression=1, max_pixels=10_000)


@pytest.fixture(scope="module")
def digit() -> np.ndarray:
    images, _ = load_digits()
    return images[1234]


def _encode(pixels: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    image = Image.fromarray(pixels)
    if mode:
        image = image.convert(mode)
    image.save(buf, format=fmt)
    return buf.getvalue()


def test_grayscale_png_becomes_rgb_with_the_same_pixels(digit):
    rgb = decode_rgb(_encode(digit, "PNG"), SPEC.max_pixels)
    assert rgb.shape == (28, 28, 3)
    assert rgb.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], digit)


def test_prepare_roundtrips_pixel_exact_through_png(digit):
    prepared = prepare_image(_encode(digit, "PNG"), SPEC)
    stored = decode_png(prepared.png)
    np.testing.assert_array_equal(stored, np.stack([digit] * 3, axis=-1))


def test_same_pixels_in_other_formats_hash_the_same(digit):
    formats = ("PNG", "BMP", "TIFF")
    hashes = {prepare_image(_encode(digit, fmt), SPEC).content_hash for fmt in formats}
    assert len(hashes) == 1
    other = digit.copy()
    other[0, 0] ^= 1
    assert pixel_hash(np.stack([other] * 3, -1)) not in hashes


def test_resize_to_configured_size(digit):
    prepared = prepare_image(_encode(digit, "PNG"), ImageSpec(height=14, width=20))
    assert decode_png(prepared.png).shape == (14, 20, 3)


def test_encode_png_is_what_petastorm_codec_writes(digit):
    from petastorm.codecs import CompressedImageCodec
    from petastorm.unischema import UnischemaField

    rgb = np.stack([digit, digit[::-1], digit.T], axis=-1)
    field = UnischemaField("image", np.uint8, (28, 28, 3), CompressedImageCodec("png"), False)
    decoded = CompressedImageCodec("png").decode(field, bytearray(encode_png(rgb, 1)))
    np.testing.assert_array_equal(decoded, rgb)


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty_file"),
    (b"this is a text file, not an image\n", "not_an_image"),
])
def test_non_images_are_rejected_with_a_reason(data, reason):
    with pytest.raises(Rejected) as info:
        prepare_image(data, SPEC)
    assert info.value.reason == reason


def test_truncated_png_is_rejected(digit):
    data = _encode(digit, "PNG")
    with pytest.raises(Rejected) as info:
        prepare_image(data[: len(data) // 2], SPEC)
    assert info.value.reason == "corrupt_image"


def test_pixel_limit_is_checked_from_the_header():
    big = np.zeros((200, 200), dtype=np.uint8)
    with pytest.raises(Rejected) as info:
        prepare_image(_encode(big, "PNG"), SPEC)
    assert info.value.reason == "too_many_pixels"
    assert "200x200" in info.value.detail


def test_clean_image_file_never_raises(digit):
    root = "file:/data/raw"
    ok = clean_image_file(f"{root}/7/a.png", _encode(digit, "PNG"), root, SPEC,
                          {"train": 0.8, "val": 0.2})
    assert ok.reason is None and ok.label_name == "7" and ok.split in ("train", "val")
    bad = clean_image_file(f"{root}/7/b.png", b"garbage", root, SPEC, {"train": 1.0})
    assert (bad.reason, bad.label_name, bad.split, bad.image) == ("not_an_image", "7", None, None)
    unlabelled = clean_image_file(f"{root}/c.png", _encode(digit, "PNG"), root, SPEC,
                                  {"train": 1.0})
    assert unlabelled.reason == "no_label"
