"""The Petastorm schema of an image dataset version: defined here and nowhere else."""

from __future__ import annotations

import numpy as np
from petastorm.codecs import CompressedImageCodec, NdarrayCodec, ScalarCodec
from petastorm.unischema import Unischema, UnischemaField
from pyspark.sql.types import IntegerType, StringType

from pipeline.config import ImagesConfig
from pipeline.datasets.features import image_shape


def image_schema(images: ImagesConfig) -> Unischema:
    """Images of the configured size, mode and encoding, with their label and provenance."""
    codec = CompressedImageCodec(images.encoding, quality=images.jpeg_quality)
    return Unischema("ImageRecord", [
        UnischemaField("image", np.uint8, image_shape(images), codec, False),
        UnischemaField("label", np.int32, (), ScalarCodec(IntegerType()), False),
        UnischemaField("label_name", np.str_, (), ScalarCodec(StringType()), False),
        UnischemaField("source", np.str_, (), ScalarCodec(StringType()), False),
        UnischemaField("content_hash", np.str_, (), ScalarCodec(StringType()), False),
        # the raw file's size as its header said, before any resize (evaluation's size slice)
        UnischemaField("original_width", np.int32, (), ScalarCodec(IntegerType()), False),
        UnischemaField("original_height", np.int32, (), ScalarCodec(IntegerType()), False),
        # its profile as JSON (datasets.profiles): a retrain reuses the row with its statistics
        UnischemaField("profile", np.str_, (), ScalarCodec(StringType()), False),
    ])


def text_schema(max_len: int) -> Unischema:
    """Token ids of a fixed length with the cleaned text, its label and provenance."""
    return Unischema("TextRecord", [
        UnischemaField("token_ids", np.int32, (max_len,), NdarrayCodec(), False),
        UnischemaField("length", np.int32, (), ScalarCodec(IntegerType()), False),
        UnischemaField("label", np.int32, (), ScalarCodec(IntegerType()), False),
        UnischemaField("label_name", np.str_, (), ScalarCodec(StringType()), False),
        UnischemaField("text", np.str_, (), ScalarCodec(StringType()), False),
        UnischemaField("source", np.str_, (), ScalarCodec(StringType()), False),
        UnischemaField("line", np.int32, (), ScalarCodec(IntegerType()), True),
        UnischemaField("content_hash", np.str_, (), ScalarCodec(StringType()), False),
    ])


def describe(schema: Unischema) -> list[dict[str, object]]:
    """A JSON-friendly description of a schema, for the manifest."""
    return [
        {"name": f.name, "dtype": np.dtype(f.numpy_dtype).name, "shape": list(f.shape),
         "codec": type(f.codec).__name__}
        for f in schema.fields.values()
    ]
