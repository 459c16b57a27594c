"""Per-image cleaning on real digits, photos and a corpus of broken and odd files, without Spark."""

from __future__ import annotations

import io
from collections import defaultdict

import numpy as np
import pytest
from petastorm.codecs import CompressedImageCodec
from petastorm.unischema import UnischemaField
from PIL import Image

from pipeline.config import ImagesConfig, load_config
from pipeline.datasets.features import decode_image as decode_stored
from pipeline.datasets.features import image_shape
from pipeline.ingest import image_records
from pipeline.ingest.discover import classify_folder_file
from pipeline.ingest.image_records import clean_image_file
from pipeline.ingest.images import (
    SUPPORTED_FORMATS,
    decode_pixels,
    normalise_mode,
    pixel_hash,
    prepare_image,
    resize,
)
from pipeline.ingest.rejection import Rejected
from pipeline.samples.digits import load_digits
from tests.corpus import CORPUS_CONFIG_OVERRIDES, EXIF_ROTATED, png_bomb, write_image_corpus

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def images_config(*overrides: str) -> ImagesConfig:
    return load_config(overrides=overrides).images


DEFAULTS = images_config()


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    images, _ = load_digits()
    return images[1230:1240]


@pytest.fixture(scope="module")
def digit(digits) -> np.ndarray:
    return digits[4]


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real 64x48 RGB photograph crop."""
    from sklearn.datasets import load_sample_images

    return np.ascontiguousarray(load_sample_images().images[0][200:248:, 300:364])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return root, write_image_corpus(root)


def _encode(image: np.ndarray | Image.Image, fmt: str, **params) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def _reason(data: bytes, cfg: ImagesConfig = DEFAULTS) -> str:
    with pytest.raises(Rejected) as info:
        prepare_image(data, cfg)
    return info.value.reason


def _codec_decode(codec: CompressedImageCodec, encoded: bytes, shape) -> np.ndarray:
    field = UnischemaField("image", np.uint8, shape, codec, False)
    return codec.decode(field, bytearray(encoded))


# --- decoding and validation -------------------------------------------------------------


def test_grayscale_png_becomes_rgb_with_the_same_pixels(digit):
    rgb = decode_pixels(_encode(digit, "PNG"), DEFAULTS)
    assert rgb.shape == (28, 28, 3)
    assert rgb.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], digit)


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty_file"),
    (b"this is a text file, not an image\n", "not_an_image"),
    (bytes(range(256)), "not_an_image"),
    (b"\x89PNG\r\n\x1a\n" + bytes(40), "corrupt_image"),  # PNG signature, broken header
])
def test_non_images_are_rejected_with_a_reason(data, reason):
    assert _reason(data) == reason


@pytest.mark.parametrize(("fmt", "name"), [
    ("EPS", "cat/photo.png"), ("ICO", "cat/photo.jpg"), ("TGA", "cat/photo.png"),
    ("PPM", "cat/photo.png"), ("PCX", "cat/photo.bmp"), ("SGI", "cat/photo.gif"),
])
def test_formats_outside_the_supported_ones_are_never_decoded(photo, monkeypatch, fmt, name):
    """Pillow could open each of these; only SUPPORTED_FORMATS' decoders may run on an input
    (EPS would go to Ghostscript)."""
    import PIL.EpsImagePlugin

    calls = []
    monkeypatch.setattr(PIL.EpsImagePlugin, "Ghostscript", lambda *a, **k: calls.append(a))
    data = _encode(Image.fromarray(photo[:32, :32]).convert("RGB"), fmt)
    assert Image.open(io.BytesIO(data)).format == fmt  # a valid file of that format
    record = clean_image_file(name, data, "cat", DEFAULTS, {"train": 1.0})
    assert (record.reason, record.image, calls) == ("not_an_image", None, [])
    assert fmt not in SUPPORTED_FORMATS


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF"])
def test_truncated_files_are_rejected_not_padded(photo, fmt):
    data = _encode(photo, fmt)
    assert _reason(data[: len(data) // 2]) == "corrupt_image"


def test_jpeg_with_trailing_garbage_is_accepted(photo):
    data = _encode(photo, "JPEG", quality=95)
    clean = decode_pixels(data, DEFAULTS)
    np.testing.assert_array_equal(decode_pixels(data + b"\0trailing junk" * 20, DEFAULTS), clean)


def test_pixel_limit_is_checked_from_the_header():
    big = np.zeros((200, 200), dtype=np.uint8)
    with pytest.raises(Rejected) as info:
        prepare_image(_encode(big, "PNG"), images_config("images.max_pixels=10000"))
    assert info.value.reason == "too_many_pixels"
    assert "200x200" in info.value.detail
    assert prepare_image(_encode(big, "PNG"), images_config("images.max_pixels=40000"))
    # one row of data behind a 200x200 header: decoding it would fail, the limit comes first
    bomb = png_bomb(200, 200)
    assert _reason(bomb, images_config("images.max_pixels=40000")) == "corrupt_image"
    assert _reason(bomb, images_config("images.max_pixels=39999")) == "too_many_pixels"
    assert _reason(png_bomb(), DEFAULTS) == "too_many_pixels"  # 10^10 pixels, 150 bytes


def test_min_size_applies_to_the_smaller_side():
    cfg = images_config("images.min_size=5")
    assert _reason(_encode(np.zeros((4, 10), np.uint8), "PNG"), cfg) == "too_small"
    assert _reason(_encode(np.zeros((10, 4), np.uint8), "PNG"), cfg) == "too_small"
    assert decode_pixels(_encode(np.zeros((5, 10), np.uint8), "PNG"), cfg).shape == (5, 10, 3)


def test_exif_orientation_is_applied(corpus):
    root, _ = corpus
    pixels = decode_pixels((root / EXIF_ROTATED).read_bytes(), DEFAULTS).astype(int)
    assert pixels.shape == (48, 32, 3)  # stored 48 wide x 32 high, orientation 6
    top_right, top_left = pixels[:10, -10:].mean(axis=(0, 1)), pixels[:10, :10].mean(axis=(0, 1))
    assert top_right[0] > 230 and top_right[1] < 30 and top_right[2] < 30
    assert not (top_left[0] > 200 and top_left[1] < 60)


# --- colour modes ------------------------------------------------------------------------


def test_cmyk_jpeg_comes_back_close_to_the_rgb_it_was_made_from(photo):
    data = _encode(Image.fromarray(photo).convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    rgb = decode_pixels(data, DEFAULTS)
    assert np.abs(rgb.astype(int) - photo).mean() < 4


RAMP = np.arange(256, dtype=np.uint16).reshape(16, 16)


@pytest.mark.parametrize(("values", "fmt"), [
    (RAMP * 257, "PNG"),  # 16-bit PNG, opened as I;16
    ((RAMP * 257).astype(np.int32), "TIFF"),  # I holding 16-bit values
    (RAMP.astype(np.int32) << 23, "TIFF"),  # I holding 31-bit values
    (RAMP.astype(np.float32) / 255, "TIFF"),  # F in 0-1
    (RAMP.astype(np.float32), "TIFF"),  # F in 0-255
])
def test_high_depth_gray_is_scaled_not_clipped(values, fmt):
    data = _encode(values, fmt)
    gray = decode_pixels(data, images_config("images.color_mode=grayscale"))
    assert gray.dtype == np.uint8
    np.testing.assert_allclose(gray, RAMP, atol=1)
    rgb = decode_pixels(data, DEFAULTS)
    np.testing.assert_array_equal(rgb, np.stack([gray] * 3, axis=-1))


def test_sixteen_bit_scaling_is_exact_for_both_byte_orders():
    for values in (RAMP * 257, (RAMP * 257).astype(">u2")):
        image = Image.fromarray(values)
        assert image.mode in ("I;16", "I;16B")
        np.testing.assert_array_equal(normalise_mode(image, "grayscale"), RAMP)
    top = Image.fromarray(np.array([[1000, 65535]], np.uint16))
    np.testing.assert_array_equal(normalise_mode(top, "grayscale"), [[4, 255]])


def test_palette_transparency_is_composited_over_white():
    indices = np.zeros((4, 6), np.uint8)
    indices[:, 3:] = 1
    image = Image.fromarray(indices, mode="P")
    image.putpalette([0, 0, 0, *RED])  # index 0 is black in the palette, but transparent
    rgb = decode_pixels(_encode(image, "PNG", transparency=0), DEFAULTS)
    assert (rgb[:, :3] == WHITE).all()
    assert (rgb[:, 3:] == RED).all()
    opaque = decode_pixels(_encode(image, "PNG"), DEFAULTS)
    assert (opaque[:, :3] == 0).all()


def test_alpha_is_composited_over_white():
    rgba = np.array([[[*RED, 0], [*RED, 128], [*RED, 255], [*BLUE, 255]]], np.uint8)
    rgb = decode_pixels(_encode(rgba, "PNG"), DEFAULTS).astype(int)
    np.testing.assert_allclose(rgb, [[WHITE, (255, 127, 127), RED, BLUE]], atol=1)
    la = np.array([[[0, 0], [100, 255], [0, 128]]], np.uint8)
    gray = decode_pixels(_encode(la, "PNG"), images_config("images.color_mode=grayscale"))
    np.testing.assert_allclose(gray.astype(int), [[255, 100, 127]], atol=1)


@pytest.mark.parametrize("mode", ["CMYK", "YCbCr", "LAB", "HSV"])
def test_other_modes_become_rgb_and_grayscale_is_its_luma(photo, mode):
    image = Image.fromarray(photo).convert(mode)
    rgb = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(normalise_mode(image, "rgb"), rgb)
    luma = np.asarray(Image.fromarray(rgb).convert("L"))
    np.testing.assert_array_equal(normalise_mode(image, "grayscale"), luma)


def test_palette_with_alpha_and_bilevel_modes():
    pa = Image.merge("PA", (Image.fromarray(np.array([[0, 1, 1]], np.uint8)),
                            Image.fromarray(np.array([[0, 255, 128]], np.uint8))))
    pa.putpalette([0, 0, 0, *RED])
    np.testing.assert_allclose(normalise_mode(pa, "rgb").astype(int),
                               [[WHITE, RED, (255, 127, 127)]], atol=1)
    bilevel = Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1")
    np.testing.assert_array_equal(normalise_mode(bilevel, "grayscale"), [[0, 255]])
    np.testing.assert_array_equal(normalise_mode(bilevel, "rgb"), [[(0, 0, 0), WHITE]])


def test_grayscale_mode_gives_h_by_w(digit, photo):
    cfg = images_config("images.color_mode=grayscale", "images.height=14", "images.width=20")
    assert image_shape(cfg) == (14, 20)
    assert image_shape(DEFAULTS) == (28, 28, 3)
    np.testing.assert_array_equal(decode_pixels(_encode(digit, "PNG"), cfg), digit)
    luma = np.asarray(Image.fromarray(photo).convert("L"))
    np.testing.assert_array_equal(decode_pixels(_encode(photo, "PNG"), cfg), luma)
    assert decode_stored(prepare_image(_encode(photo, "PNG"), cfg).encoded).shape == (14, 20)


# --- animation ---------------------------------------------------------------------------


def _animated(frames: np.ndarray, fmt: str) -> bytes:
    first, *rest = (Image.fromarray(frame) for frame in frames)
    extra = {"lossless": True} if fmt == "WEBP" else {}
    return _encode(first, fmt, save_all=True, append_images=rest, **extra)


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animation_first_frame_or_reject(digits, fmt):
    data = _animated(digits[:3], fmt)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    gray = images_config("images.color_mode=grayscale", "images.animation=first_frame")
    np.testing.assert_array_equal(decode_pixels(data, gray), digits[0])
    assert _reason(data, images_config("images.animation=reject")) == "animated"
    single = _encode(digits[0], fmt)
    assert decode_pixels(single, images_config("images.animation=reject")).shape == (28, 28, 3)


@pytest.mark.parametrize("fmt", ["GIF", "PNG"])
def test_first_frame_does_not_decode_later_frames(digits, fmt):
    data = _animated(digits[:3], fmt)
    cut = data[: len(data) - 60]  # the last frame is truncated
    gray = images_config("images.color_mode=grayscale")
    np.testing.assert_array_equal(decode_pixels(cut, gray), digits[0])


def test_multi_page_tiff_is_not_an_animation(digits):
    data = _animated(digits[:2], "TIFF")
    pixels = decode_pixels(data, images_config("images.animation=reject",
                                               "images.color_mode=grayscale"))
    np.testing.assert_array_equal(pixels, digits[0])


# --- resize ------------------------------------------------------------------------------


def _bands(height: int = 20) -> np.ndarray:
    """height x 2*height: red quarter, green half, blue quarter, left to right."""
    width = 2 * height
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 4] = RED
    pixels[:, width // 4: 3 * width // 4] = GREEN
    pixels[:, 3 * width // 4:] = BLUE
    return pixels


def _policy(name: str, height: int = 20, width: int = 20, mode: str = "rgb") -> ImagesConfig:
    return images_config(f"images.resize={name}", f"images.height={height}",
                         f"images.width={width}", f"images.color_mode={mode}")


def test_fit_stretches_to_the_exact_size():
    out = resize(_bands(), _policy("fit"))
    assert out.shape == (20, 20, 3)
    assert (out[:, :5] == RED).all() and (out[:, 5:15] == GREEN).all()
    assert (out[:, 15:] == BLUE).all()


def test_pad_keeps_the_aspect_ratio_with_centred_black_bars():
    out = resize(_bands(), _policy("pad"))
    assert out.shape == (20, 20, 3)
    assert (out[:5] == 0).all() and (out[15:] == 0).all()  # bars above and below
    assert (out[5:15, :5] == RED).all() and (out[5:15, 5:15] == GREEN).all()
    assert (out[5:15, 15:] == BLUE).all()
    tall = resize(np.ascontiguousarray(_bands().transpose(1, 0, 2)), _policy("pad"))
    assert (tall[:, :5] == 0).all() and (tall[:, 15:] == 0).all()  # bars left and right
    assert (tall[:5, 5:15] == RED).all() and (tall[15:, 5:15] == BLUE).all()


def test_crop_keeps_the_centre():
    out = resize(_bands(), _policy("crop"))
    assert out.shape == (20, 20, 3)
    assert (out == GREEN).all()
    wide = resize(_bands(), _policy("crop", height=10, width=40))  # 4:1 crop of a 2:1 image
    assert wide.shape == (10, 40, 3)
    assert (wide[:, :10] == RED).all() and (wide[:, -10:] == BLUE).all()


@pytest.mark.parametrize("policy", ["fit", "pad", "crop"])
@pytest.mark.parametrize("mode", ["rgb", "grayscale"])
@pytest.mark.parametrize("size", [(1, 1), (2, 4000), (4000, 2)], ids=str)
def test_extreme_shapes_work_for_every_policy(policy, mode, size):
    cfg = _policy(policy, height=28, width=24, mode=mode)
    data = _encode(np.full(size, 200, np.uint8), "PNG")
    stored = decode_stored(prepare_image(data, cfg).encoded)
    assert stored.shape == image_shape(cfg)
    if policy == "pad":  # no shape here has the target's 28:24 aspect, so there are bars
        assert stored.max() == 200 and stored.min() == 0
    else:
        assert (stored == 200).all()


# --- hashing and stored encoding ---------------------------------------------------------


def test_same_pixels_in_other_formats_hash_the_same(digit, photo):
    formats = [("PNG", {}), ("BMP", {}), ("TIFF", {}), ("TIFF", {"compression": "tiff_lzw"}),
               ("WEBP", {"lossless": True})]
    for pixels in (digit, photo):
        hashes = {prepare_image(_encode(pixels, fmt, **params), DEFAULTS).content_hash
                  for fmt, params in formats}
        assert len(hashes) == 1
    other = digit.copy()
    other[0, 0] ^= 1
    assert prepare_image(_encode(other, "PNG"), DEFAULTS).content_hash not in hashes | {
        prepare_image(_encode(digit, "PNG"), DEFAULTS).content_hash}


def test_hash_is_taken_before_resize(photo):
    data = _encode(photo, "PNG")
    small = prepare_image(data, _policy("crop", height=8, width=8))
    assert small.content_hash == prepare_image(data, DEFAULTS).content_hash
    assert small.content_hash == pixel_hash(photo)


@pytest.mark.parametrize("mode", ["rgb", "grayscale"])
def test_png_roundtrips_exactly_through_petastorms_codec(photo, mode):
    cfg = images_config(f"images.color_mode={mode}", "images.height=48", "images.width=64")
    data = _encode(photo, "PNG")
    pixels = decode_pixels(data, cfg)
    encoded = prepare_image(data, cfg).encoded
    assert encoded.startswith(b"\x89PNG")
    codec = CompressedImageCodec("png")
    np.testing.assert_array_equal(_codec_decode(codec, encoded, image_shape(cfg)), pixels)
    np.testing.assert_array_equal(decode_stored(encoded), pixels)
    field = UnischemaField("image", np.uint8, image_shape(cfg), codec, False)
    np.testing.assert_array_equal(decode_stored(bytes(codec.encode(field, pixels))), pixels)


def test_real_digits_roundtrip_pixel_exact(digits):
    for digit in digits:
        stored = decode_stored(prepare_image(_encode(digit, "PNG"), DEFAULTS).encoded)
        np.testing.assert_array_equal(stored, np.stack([digit] * 3, axis=-1))


@pytest.mark.parametrize("mode", ["rgb", "grayscale"])
def test_jpeg_encoding_decodes_close_through_petastorms_codec(photo, mode):
    sized = (f"images.color_mode={mode}", "images.height=48", "images.width=64",
             "images.encoding=jpeg")
    data = _encode(photo, "PNG")
    cfg = images_config(*sized, "images.jpeg_quality=95")
    pixels = decode_pixels(data, cfg).astype(int)
    encoded = prepare_image(data, cfg).encoded
    assert encoded.startswith(b"\xff\xd8\xff")
    decoded = _codec_decode(CompressedImageCodec("jpeg", 95), encoded, image_shape(cfg))
    assert decoded.shape == pixels.shape
    assert np.abs(decoded - pixels).mean() < 3  # swapped channels would be far off
    np.testing.assert_array_equal(decode_stored(encoded), decoded)
    worse = prepare_image(data, images_config(*sized, "images.jpeg_quality=20")).encoded
    assert len(worse) < len(encoded)


def test_png_compression_level_is_used(photo):
    data = _encode(photo, "PNG")
    stored = prepare_image(data, images_config("images.png_compression=0")).encoded
    smaller = prepare_image(data, images_config("images.png_compression=9")).encoded
    assert len(smaller) < len(stored)
    np.testing.assert_array_equal(decode_stored(smaller), decode_stored(stored))


def test_decode_stored_rejects_garbage():
    with pytest.raises(ValueError, match="do not decode"):
        decode_stored(b"not an image")


# --- records and the corpus --------------------------------------------------------------


def test_clean_image_file_never_raises(digit, monkeypatch):
    root = "file:/data/raw"
    ok = clean_image_file(f"{root}/7/a.png", _encode(digit, "PNG"), "7", DEFAULTS,
                          {"train": 0.8, "val": 0.2})
    assert ok.reason is None and ok.label_name == "7" and ok.split in ("train", "val")
    np.testing.assert_array_equal(decode_stored(ok.image), np.stack([digit] * 3, axis=-1))
    bad = clean_image_file(f"{root}/7/b.png", b"garbage", "7", DEFAULTS, {"train": 1.0})
    assert (bad.reason, bad.label_name, bad.split, bad.image) == ("not_an_image", "7", None, None)

    def broken(data, cfg):
        raise IndexError("decoder bug")

    monkeypatch.setattr(image_records, "prepare_image", broken)
    bug = clean_image_file(f"{root}/7/a.png", b"x", "7", DEFAULTS, {"train": 1.0})
    assert (bug.reason, bug.detail) == ("unexpected_error", "IndexError: decoder bug")


def _per_record(expected: str) -> str:
    """Outcome of one file on its own: dedup and label conflicts are decided later, by Spark."""
    grouped = expected.startswith("duplicate_group:") or expected == "conflicting_labels"
    return "accepted" if grouped else expected


@pytest.mark.parametrize("overrides", [
    (),
    ("images.color_mode=grayscale", "images.resize=pad", "images.encoding=jpeg"),
    ("images.resize=crop", "images.height=32", "images.width=16"),
], ids=["defaults", "grayscale-pad-jpeg", "crop-32x16"])
def test_every_corpus_file_gets_its_expected_outcome(corpus, overrides):
    root, expected = corpus
    cfg = images_config(*CORPUS_CONFIG_OVERRIDES, *overrides)
    uri = f"file:{root}"
    got, want = {}, {}
    for relative, outcome in expected.items():
        data = (root / relative).read_bytes()
        found = classify_folder_file(f"{uri}/{relative}", len(data), uri)  # as the job does
        if found.reason is not None:
            record_reason = found.reason
        else:
            record = clean_image_file(found.path, data, found.label, cfg,
                                      {"train": 0.8, "val": 0.2})
            record_reason = record.reason
        got[relative], want[relative] = record_reason or "accepted", _per_record(outcome)
        if record_reason is None:
            assert record.label_name == relative.split("/")[0]
            assert decode_stored(record.image).shape == image_shape(cfg)
    assert got == want


def test_corpus_shares_pixels_only_where_intended(corpus):
    root, expected = corpus
    cfg = images_config(*CORPUS_CONFIG_OVERRIDES)
    by_hash, by_intent = defaultdict(set), defaultdict(set)
    for relative, outcome in expected.items():
        if _per_record(outcome) == "accepted":
            by_hash[prepare_image((root / relative).read_bytes(), cfg).content_hash].add(relative)
            by_intent[outcome if outcome != "accepted" else relative].add(relative)
    assert sorted(map(sorted, by_hash.values())) == sorted(map(sorted, by_intent.values()))
    groups = [o for o in set(expected.values()) if o.startswith("duplicate_group:")]
    assert len(groups) >= 2
    assert all(len(by_intent[group]) == 2 for group in [*groups, "conflicting_labels"])
    labels = {relative.split("/")[0] for relative in by_intent["conflicting_labels"]}
    assert labels == {"cat", "dog"}


def test_corpus_is_small_and_covers_every_outcome(corpus):
    root, expected = corpus
    files = [path for path in root.rglob("*") if path.is_file()]
    assert sorted(path.relative_to(root).as_posix() for path in files) == sorted(expected)
    assert len(files) < 60
    assert sum(path.stat().st_size for path in files) < 2_000_000
    outcomes = {_per_record(outcome) for outcome in expected.values()}
    assert outcomes == {"accepted", "no_label", "hidden_file", "empty_file", "not_an_image",
                        "corrupt_image", "too_many_pixels", "too_small"}
