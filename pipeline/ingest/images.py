"""Per-image cleaning, plain Python: decode safely, normalise the mode, resize, encode.

No Spark here: the ingest job maps ``prepare_image`` over raw bytes, and batch inference
reuses it so that serving sees exactly the pixels training saw. Every option comes from
``ImagesConfig`` (the ``images:`` section of the configuration).
"""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from pipeline.config import ImagesConfig
from pipeline.datasets.features import encode_image
from pipeline.datasets.profiles import Profile, image_profile
from pipeline.datasets.reasons import Reason
from pipeline.ingest.rejection import Rejected

# We enforce our own pixel limit from the header (ImagesConfig.max_pixels) before decoding,
# so Pillow's bomb check must not fire first with a different error.
Image.MAX_IMAGE_PIXELS = None
# A truncated file must fail to load, never come back silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False
cv2.setNumThreads(1)

# What Pillow raises on bad data (Image.open probes plugins with the same set).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)
# The only decoders that run on an input: any other format (EPS through Ghostscript, ICO, TGA,
# PSD, ...) is ``not_an_image``, never handed to a plugin. JPEG includes its MPO variant.
SUPPORTED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")
# File signatures Pillow knows: an unreadable file that starts with one is corrupt, not text.
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*")
# Formats whose extra frames are an animation (extra TIFF pages or MPO previews are not).
_ANIMATED_FORMATS = ("GIF", "PNG", "WEBP")
# color_mode -> the JPEG raw modes OpenCV decodes to Pillow's pixels (8-bit samples; an RGB
# JPEG's gray is Pillow's luma, not libjpeg's Y, so only gray JPEGs decode straight to gray)
_OPENCV_MODES = {"rgb": ("RGB", "L"), "grayscale": ("L",)}
# after 0xFF inside a scan: a stuffed zero, a restart marker, or fill
_IN_SCAN = frozenset([0x00, *range(0xD0, 0xD8), 0xFF])
# markers without a length (start of image, restart, TEM) and the progressive frame headers
_STANDALONE = frozenset([0x01, 0xD8, *range(0xD0, 0xD8)])
_PROGRESSIVE_FRAMES = frozenset([0xC2, 0xC6, 0xCA, 0xCE])
_ORIENTATION = 0x0112  # the EXIF tag ImageOps.exif_transpose reads


@dataclass(frozen=True)
class PreparedImage:
    """What ingest stores of an image: its encoding (PNG/JPEG), its pixels' hash, and its
    profile (``datasets.profiles``: the measures a version's statistics add up)."""

    encoded: bytes
    content_hash: str
    profile: Profile


@dataclass(frozen=True)
class Original:
    """What the file's header said: size, format, Pillow mode."""

    width: int
    height: int
    format: str
    mode: str


def _open(data: bytes) -> Image.Image:
    """Parse only the header (Pillow is lazy): no pixel is decoded here."""
    if not data:
        raise Rejected(Reason.EMPTY_FILE, "the file has no bytes")
    try:
        return Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except UnidentifiedImageError:
        if data.startswith(_SIGNATURES) or data[8:12] == b"WEBP":
            raise Rejected(Reason.CORRUPT_IMAGE,
                           "image signature but unreadable header") from None
        raise Rejected(Reason.NOT_AN_IMAGE, "no supported image format recognised in the "
                                            "file header") from None
    except _DECODE_ERRORS as exc:
        raise Rejected(Reason.CORRUPT_IMAGE, f"header unreadable: {exc}") from None


def decode_pixels(data: bytes, cfg: ImagesConfig) -> np.ndarray:
    """Raw file bytes -> oriented, mode-normalised uint8 pixels before resize (``decode_image``)."""
    return decode_image(data, cfg)[0]


def decode_image(data: bytes, cfg: ImagesConfig, opencv: bool = True
                 ) -> tuple[np.ndarray, Original]:
    """Raw file bytes -> (oriented, mode-normalised uint8 pixels before resize, what the header
    said); raises ``Rejected``.

    Checks run cheapest first: pixel count and animation from the header, then the first
    frame alone is decoded, EXIF orientation applied, the mode normalised, the size checked.
    The decode is OpenCV's where ``opencv_pixels`` takes the file (the same pixels, faster),
    else Pillow's; ``opencv=False`` always takes Pillow's (the tests compare the two).
    """
    image = _open(data)
    width, height = image.size
    if width * height > cfg.max_pixels:
        raise Rejected(Reason.TOO_MANY_PIXELS,
                       f"header claims {width}x{height} = {width * height} pixels "
                       f"> max_pixels {cfg.max_pixels}")
    kind = image.format or "image"
    original = Original(width, height, kind, image.mode)
    try:
        if (cfg.animation == "reject" and kind in _ANIMATED_FORMATS
                and getattr(image, "is_animated", False)):
            raise Rejected(Reason.ANIMATED, f"{kind} has more than one frame")
        pixels = opencv_pixels(data, image, cfg.color_mode) if opencv else None
        if pixels is None:
            image.load()  # the current (first) frame only
            pixels = normalise_mode(ImageOps.exif_transpose(image), cfg.color_mode)
    except _DECODE_ERRORS as exc:
        raise Rejected(Reason.CORRUPT_IMAGE, f"{kind} failed to decode: {exc}") from None
    height, width = pixels.shape[:2]
    if min(height, width) < cfg.min_size:
        raise Rejected(Reason.TOO_SMALL, f"{width}x{height} is below min_size {cfg.min_size}")
    return pixels, original


def opencv_pixels(data: bytes, image: Image.Image, color_mode: str) -> np.ndarray | None:
    """The pixels Pillow would give (``normalise_mode`` of the upright image), decoded by
    OpenCV; None where that is not known to hold, and for anything OpenCV cannot decode, so
    Pillow decodes it (and names what is wrong).

    Taken: a JPEG with 8-bit RGB or gray samples, no EXIF rotation, made of clean segments up
    to its end marker (``_ends_cleanly``). Both libraries decode it with libjpeg-turbo, and both
    replicate gray into RGB. PNG is left to Pillow: its orientation can
    sit in text or XMP chunks, and a transparency chunk after the pixels still counts.
    """
    if (image.format != "JPEG" or _raw_mode(image) not in _OPENCV_MODES[color_mode]
            or not _ends_cleanly(data) or _orientation(image) != 1):
        return None
    flags = cv2.IMREAD_IGNORE_ORIENTATION | (cv2.IMREAD_COLOR if color_mode == "rgb"
                                             else cv2.IMREAD_GRAYSCALE)
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:  # e.g. more pixels than OpenCV's own limit: Pillow's checks decide
        return None
    if pixels is None:
        return None
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB) if pixels.ndim == 3 else pixels


def _orientation(image: Image.Image) -> int | None:
    """The EXIF orientation ``exif_transpose`` would apply; None when the EXIF block is broken
    (Pillow then decodes, and names what is wrong as it always does)."""
    try:
        return image.getexif().get(_ORIENTATION, 1)
    except Exception:  # any parse failure: not this path's to judge
        # getexif keeps what it read before failing and would not fail again: forget it, so
        # that Pillow's path meets the broken block as if this had not looked
        image._exif = None
        return None


def _raw_mode(image: Image.Image) -> str | None:
    """How the first tile's samples are packed ("RGB", "L", "CMYK", ...)."""
    if len(image.tile) != 1:
        return None
    args = image.tile[0].args
    return args[0] if isinstance(args, tuple) else args


def _ends_cleanly(data: bytes) -> bool:
    """Whether the JPEG is a clean run of segments from its start marker to its end marker,
    which is the last two bytes, and a sequential (not progressive) file has one scan.

    libjpeg reads what follows a sequential file's scan only after the last row is decoded;
    OpenCV ignores an error there (a stray marker, a second image, a truncated one followed by
    another) that Pillow reports, and pads a truncated file with grey. A progressive file is
    read whole before any row, so OpenCV fails on such errors itself and Pillow decides.
    """
    if not data.startswith(b"\xff\xd8"):
        return False
    position, scans, progressive = 2, 0, False
    while position + 2 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xFF:  # fill before a marker
            position += 1
            continue
        if marker == 0xD9:  # end of image
            return scans > 0 and position + 2 == len(data)
        if marker in _STANDALONE or (scans and not progressive):
            return False
        progressive = progressive or marker in _PROGRESSIVE_FRAMES
        position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
        if marker == 0xDA:  # start of scan: its entropy-coded data runs to the next marker
            scans += 1
            position = _scan_end(data, position)
    return False


def _scan_end(data: bytes, position: int) -> int:
    """Where the entropy-coded data starting at ``position`` ends: the first marker that is not
    a stuffed 0xFF00, a restart marker or fill (``len(data)`` when there is none)."""
    while (position := data.find(b"\xff", position)) >= 0 and position + 1 < len(data):
        if data[position + 1] not in _IN_SCAN:
            return position
        position += 1
    return len(data)


def normalise_mode(image: Image.Image, color_mode: str) -> np.ndarray:
    """Any Pillow mode -> uint8 (H, W, 3) RGB or (H, W) grayscale.

    Alpha and transparency are composited over white, the usual background of icons, scans
    and web graphics (a transparent pixel's own colour is arbitrary, often black).
    16/32-bit and float gray is scaled to 8 bits, not clipped (see ``_to_8bit``).
    """
    if image.mode == "F" or image.mode.startswith("I"):
        image = Image.fromarray(_to_8bit(np.asarray(image), image.mode))
    elif image.has_transparency_data:
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
    if image.mode not in ("1", "L", "RGB"):  # CMYK, P, RGBA, YCbCr, LAB, ...: via RGB, so that
        image = image.convert("RGB")  # grayscale is always the luma of the RGB image
    return np.asarray(image.convert("RGB" if color_mode == "rgb" else "L"), dtype=np.uint8)


def _to_8bit(values: np.ndarray, mode: str) -> np.ndarray:
    """Scale high-depth gray to 0-255 by its type's range: 16-bit 65535 -> 255, 257 -> 1.

    ``I;16*`` is 16-bit; ``I`` is taken as 16-bit (how Pillow used to open 16-bit PNGs)
    unless a value exceeds 65535, then as 31-bit; ``F`` is taken as 0-1 when its maximum
    is at most 1, else as 0-255 (Pillow's own L <-> F convention). Out of range is clipped.
    """
    values = np.nan_to_num(values.astype(np.float32))
    if mode == "F":
        top = 1.0 if values.max() <= 1.0 else 255.0
    else:
        top = 65535.0 if mode != "I" or values.max() <= 65535 else float(2**31 - 1)
    return np.rint(np.clip(values * (255.0 / top), 0, 255)).astype(np.uint8)


def pixel_hash(pixels: np.ndarray) -> str:
    """SHA-256 of the decoded pixels and their shape: equal for identical images in any format."""
    digest = hashlib.sha256(repr(pixels.shape).encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


def _scale(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """cv2 resize to exactly height x width: area interpolation when shrinking, else linear."""
    if pixels.shape[:2] == (height, width):
        return pixels
    shrinking = pixels.shape[0] >= height and pixels.shape[1] >= width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(pixels, (width, height), interpolation=interpolation)


def resize(pixels: np.ndarray, cfg: ImagesConfig) -> np.ndarray:
    """Resize to exactly ``cfg.height`` x ``cfg.width`` by the ``cfg.resize`` policy.

    ``fit`` stretches; ``pad`` scales to fit inside and pads with black, centred; ``crop``
    centre-crops the source to the target aspect ratio, then scales (so no intermediate is
    ever larger than the source or the target).
    """
    height, width = cfg.height, cfg.width
    rows, cols = pixels.shape[:2]
    if cfg.resize == "crop":
        crop_rows = min(rows, max(1, round(cols * height / width)))
        crop_cols = min(cols, max(1, round(rows * width / height)))
        top, left = (rows - crop_rows) // 2, (cols - crop_cols) // 2
        return _scale(pixels[top:top + crop_rows, left:left + crop_cols], height, width)
    if cfg.resize == "pad":
        factor = min(height / rows, width / cols)
        inner_rows = min(height, max(1, round(rows * factor)))
        inner_cols = min(width, max(1, round(cols * factor)))
        top, left = (height - inner_rows) // 2, (width - inner_cols) // 2
        canvas = np.zeros((height, width, *pixels.shape[2:]), dtype=np.uint8)
        canvas[top:top + inner_rows, left:left + inner_cols] = _scale(pixels, inner_rows,
                                                                      inner_cols)
        return canvas
    return _scale(pixels, height, width)


def prepare_image(data: bytes, cfg: ImagesConfig) -> PreparedImage:
    """Raw file bytes -> the stored encoding, the content hash and the profile of the stored
    pixels; raises ``Rejected``."""
    pixels, original = decode_image(data, cfg)
    stored = resize(pixels, cfg)
    encoded = encode_image(stored, cfg)
    if encoded is None:  # cv2 fails only on invalid arrays, which decode_pixels never returns
        raise Rejected(Reason.ENCODE_FAILED, f"{cfg.encoding} encoding failed")
    profile = image_profile(stored, original.width, original.height, original.format,
                            original.mode)
    return PreparedImage(encoded=encoded, content_hash=pixel_hash(pixels), profile=profile)
