"""Per-image cleaning, plain Python: decode safely, normalise to RGB, resize, encode PNG.

No Spark here: the ingest job maps ``prepare_image`` over raw bytes, and batch inference
reuses it so that serving sees exactly the pixels training saw.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.ingest.rejection import Rejected

# We enforce our own pixel limit from the header (ImageSpec.max_pixels) before decoding.
Image.MAX_IMAGE_PIXELS = None
cv2.setNumThreads(1)


@dataclass(frozen=True)
class ImageSpec:
    """What every accepted image becomes."""

    height: int
    width: int
    png_compression: int = 1
    max_pixels: int = 50_000_000


@dataclass(frozen=True)
class PreparedImage:
    png: bytes
    content_hash: str


def decode_rgb(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode image bytes to an RGB uint8 array (EXIF orientation applied, first frame)."""
    if not data:
        raise Rejected("empty_file", "the file has no bytes")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise Rejected("not_an_image", "no image format recognised in the file header") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise Rejected("corrupt_image", f"header unreadable: {exc}") from None
    width, height = img.size
    if width * height > max_pixels:
        raise Rejected("too_many_pixels",
                       f"header claims {width}x{height} = {width * height} pixels > {max_pixels}")
    try:
        img.seek(0)
        img = ImageOps.exif_transpose(img)
        rgb = img.convert("RGB")
        return np.asarray(rgb, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        kind = img.format or "image"
        raise Rejected("corrupt_image", f"{kind} failed to decode: {exc}") from None


def pixel_hash(pixels: np.ndarray) -> str:
    """SHA-256 of the decoded pixels and their shape: equal for identical images in any format."""
    digest = hashlib.sha256(repr(pixels.shape).encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


def resize(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize to exactly height x width (area interpolation when shrinking)."""
    if pixels.shape[:2] == (height, width):
        return pixels
    shrinking = pixels.shape[0] >= height and pixels.shape[1] >= width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(pixels, (width, height), interpolation=interpolation)


def encode_png(rgb: np.ndarray, compression: int) -> bytes:
    """PNG bytes exactly as Petastorm's ``CompressedImageCodec('png')`` stores them (cv2, BGR)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:  # cv2 fails only on invalid arrays, which decode_rgb never returns
        raise Rejected("encode_failed", "PNG encoding failed")
    return buf.tobytes()


def prepare_image(data: bytes, spec: ImageSpec) -> PreparedImage:
    """Raw file bytes -> the stored PNG and the content hash; raises ``Rejected``."""
    pixels = decode_rgb(data, spec.max_pixels)
    content_hash = pixel_hash(pixels)
    resized = resize(pixels, spec.height, spec.width)
    return PreparedImage(png=encode_png(resized, spec.png_compression), content_hash=content_hash)


def decode_png(png: bytes) -> np.ndarray:
    """Stored PNG bytes -> RGB array (the inverse of ``encode_png``)."""
    bgr = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
