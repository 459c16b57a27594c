"""The training input decodes stored images with TensorFlow: the same pixels and labels that
Petastorm's own codec gives, for every row of the shard, in every colour mode and encoding."""

from __future__ import annotations

import pytest
from PIL import Image

from pipeline.datasets.features import feature_of
from pipeline.datasets.reader import read_batches
from pipeline.train.inputs import training_examples
from tests.conftest import make_config
from tests.corpus import photo_crops


@pytest.mark.parametrize(("color_mode", "encoding"), [
    ("rgb", "png"), ("grayscale", "png"), ("rgb", "jpeg")])
def test_tf_decoding_gives_petastorms_pixels(spark, tmp_path, color_mode, encoding):
    import tensorflow as tf

    from pipeline.ingest.image_job import ingest_images

    raw = tmp_path / "raw"
    for index, pixels in enumerate(photo_crops(24)):
        folder = raw / ("left" if index % 2 else "right")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    cfg = make_config(tmp_path, f"images.color_mode={color_mode}", f"images.encoding={encoding}",
                      "images.height=24", "images.width=32", "dataset.rows_per_row_group=5",
                      "split.train=1.0", "split.val=0", "split.test=0")
    manifest = ingest_images(spark, cfg, str(raw), str(tmp_path / "out"))
    url = (tmp_path / "out").as_uri()
    rows = manifest.splits["train"].rows
    assert rows == 24

    expected = next(read_batches(url, "train", ("image", "label"), 100))
    with training_examples(tf, url, manifest, 0, 1, seed=3, reader_workers=1) as examples:
        got = list(examples.take(rows).as_numpy_iterator())
    images = feature_of(manifest).model_input(expected["image"])
    assert got[0][0].shape == images.shape[1:]
    want = sorted((image.tobytes(), int(label)) for image, label in
                  zip(images, expected["label"], strict=True))
    have = sorted((image.tobytes(), int(onehot.argmax())) for image, onehot in got)
    # one pass over the endless shard is every row once, with its label, pixel for pixel
    assert have == want
