"""The stored-feature contract of a dataset version, defined here and nowhere else.

Per kind of data: the field a model reads, its stored encoding (written by ingest, with the
same bytes Petastorm's codecs write), and its decoding into the model's input, both in numpy
(evaluation, batch inference) and in TensorFlow (the training input). Plain Python: no
Petastorm, no Spark; TensorFlow is passed in by the caller that runs it.

Images: PNG/JPEG bytes of RGB or grayscale pixels (OpenCV writes them, as Petastorm's
``CompressedImageCodec`` does: colour in BGR order in the encoder, so the file holds standard
RGB); the model reads float32 (h, w, channels). Text: int32 token ids of the version's
``max_len``, stored as ``np.save`` bytes (Petastorm's ``NdarrayCodec``); the model reads them
as int32.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from pipeline.config import ImagesConfig

SPLITS = ("train", "val", "test")  # the splits a dataset version may hold, in this order


def image_shape(cfg: ImagesConfig) -> tuple[int, ...]:
    """Shape of every stored image array: (h, w, 3) for rgb, (h, w) for grayscale."""
    if cfg.color_mode == "rgb":
        return (cfg.height, cfg.width, 3)
    return (cfg.height, cfg.width)


def encode_image(pixels: np.ndarray, cfg: ImagesConfig) -> bytes | None:
    """Pixels -> stored bytes, as Petastorm's ``CompressedImageCodec(cfg.encoding)`` writes them
    (None when OpenCV refuses the array)."""
    image = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR) if pixels.ndim == 3 else pixels
    if cfg.encoding == "png":
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, cfg.png_compression])
    else:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
    return buf.tobytes() if ok else None


def decode_image(encoded: bytes) -> np.ndarray:
    """Stored bytes -> RGB (H, W, 3) or grayscale (H, W), as Petastorm's codec decodes them."""
    image = cv2.imdecode(np.frombuffer(encoded, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError("stored image bytes do not decode")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if image.ndim == 3 else image


def encode_token_ids(ids: np.ndarray) -> bytes:
    """Token ids -> stored bytes, as Petastorm's ``NdarrayCodec`` writes them (``np.save``)."""
    memfile = io.BytesIO()
    np.save(memfile, np.asarray(ids, dtype=np.int32))
    return memfile.getvalue()


def decode_token_ids(stored: bytes) -> np.ndarray:
    """Stored token-id bytes -> int32 ids."""
    return np.load(io.BytesIO(stored), allow_pickle=False).astype(np.int32)


@dataclass(frozen=True)
class ImageFeature:
    """Images as the model reads them: float32 (h, w, channels)."""

    shape: tuple[int, int, int]
    encoding: str  # png | jpeg
    field: ClassVar[str] = "image"

    def model_input(self, values: np.ndarray) -> np.ndarray:
        """A numpy batch of stored pixels (decoded) as the model takes it."""
        return values.astype("float32").reshape((len(values), *self.shape))

    def decode(self, stored: bytes) -> np.ndarray:
        """One stored value (encoded bytes) -> the model's input for it."""
        return self.model_input(decode_image(stored)[None])[0]

    def tf_decode(self, tf, encoded):
        """Stored PNG/JPEG bytes -> the model's float32 input, decoded by TensorFlow."""
        if self.encoding == "jpeg":  # OpenCV's accurate integer IDCT
            image = tf.io.decode_jpeg(encoded, channels=self.shape[2],
                                      dct_method="INTEGER_ACCURATE")
        else:
            image = tf.io.decode_png(encoded, channels=self.shape[2])
        return tf.cast(tf.reshape(image, self.shape), tf.float32)


@dataclass(frozen=True)
class TokenFeature:
    """Token ids as the model reads them: int32 (max_len,)."""

    shape: tuple[int]
    field: ClassVar[str] = "token_ids"

    def model_input(self, values: np.ndarray) -> np.ndarray:
        return values.astype("int32")

    def decode(self, stored: bytes) -> np.ndarray:
        return decode_token_ids(stored)

    def tf_model_input(self, tf, value):
        """One decoded token-id tensor (from Petastorm's row reader) as the model takes it."""
        return tf.reshape(tf.cast(value, tf.int32), self.shape)


Feature = ImageFeature | TokenFeature


def image_feature(cfg: ImagesConfig) -> ImageFeature:
    """The image feature a version ingested with ``cfg`` holds."""
    return ImageFeature((cfg.height, cfg.width, 3 if cfg.color_mode == "rgb" else 1),
                        cfg.encoding)


def feature_of(manifest) -> Feature:
    """The feature of a dataset version, from its manifest's schema and configuration."""
    field = ImageFeature.field if manifest.kind == "images" else TokenFeature.field
    shape = next(f for f in manifest.schema if f["name"] == field)["shape"]
    if manifest.kind == "images":
        channels = shape[2] if len(shape) == 3 else 1
        return ImageFeature((shape[0], shape[1], channels), manifest.config["images"]["encoding"])
    return TokenFeature((shape[0],))
