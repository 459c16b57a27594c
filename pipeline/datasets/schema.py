"""The Petastorm schema of an image dataset version: defined here and nowhere else."""

from __future__ import annotations

import numpy as np
from petastorm.codecs import CompressedImageCodec, ScalarCodec
from petastorm.unischema import Unischema, UnischemaField
from pyspark.sql.types import IntegerType, StringType

IMAGE_FIELDS = ("image", "label", "label_name", "source", "content_hash")


def image_schema(height: int, width: int) -> Unischema:
    """RGB images of a fixed size stored as PNG, with their label and provenance."""
    return Unischema("ImageRecord", [
        UnischemaField("image", np.uint8, (height, width, 3), CompressedImageCodec("png"), False),
        UnischemaField("label", np.int32, (), ScalarCodec(IntegerType()), False),
        UnischemaField("label_name", np.str_, (), ScalarCodec(StringType()), False),
        UnischemaField("source", np.str_, (), ScalarCodec(StringType()), False),
        UnischemaField("content_hash", np.str_, (), ScalarCodec(StringType()), False),
    ])


def describe(schema: Unischema) -> list[dict[str, object]]:
    """A JSON-friendly description of a schema, for the manifest."""
    return [
        {"name": f.name, "dtype": np.dtype(f.numpy_dtype).name, "shape": list(f.shape),
         "codec": type(f.codec).__name__}
        for f in schema.fields.values()
    ]
