"""One worker's training input: its endless shard as (model input, one-hot label) pairs.

Images are read as stored, a row group of PNG/JPEG bytes at a time (Petastorm's batch reader),
and decoded by TensorFlow in parallel: about three times Petastorm's per-row decoding in Python
(benchmarks/results/train.md). Token ids are small and read by Petastorm's row reader.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from pipeline.datasets.features import feature_of
from pipeline.datasets.manifest import Manifest
from pipeline.datasets.reader import tf_column_dataset, tf_dataset, training_stream


def _sampled(tf, rows, label_of, acceptance: Sequence[float] | None, seed: int):
    """Rows kept with their class's acceptance rate (balanced sampling), before decoding."""
    if acceptance is None:
        return rows
    rates = tf.constant(acceptance, tf.float32)
    return rows.filter(lambda row: tf.random.uniform([], seed=seed)
                       < tf.gather(rates, label_of(row)))


@contextmanager
def training_examples(tf, dataset_url: str, manifest: Manifest, shard: int, shard_count: int,
                      seed: int, reader_workers: int,
                      acceptance: Sequence[float] | None = None) -> Iterator:
    """A ``tf.data.Dataset`` of single examples, endless, row groups shuffled with ``seed``;
    ``acceptance``: per class, the share of its rows kept (``train.sampling``)."""
    feature, classes = feature_of(manifest), manifest.num_classes
    field = feature.field
    images = manifest.kind == "images"
    with training_stream(dataset_url, "train", (field, "label"), shard=shard,
                         shard_count=shard_count, seed=seed, reader_workers=reader_workers,
                         columns=images) as reader:
        if images:
            rows = _sampled(tf, tf_column_dataset(reader, {field: tf.TensorSpec([], tf.string),
                                                           "label": tf.TensorSpec([], tf.int32)}),
                            lambda row: row["label"], acceptance, seed)
            yield rows.map(lambda row: (feature.tf_decode(tf, row[field]),
                                        tf.one_hot(row["label"], classes)),
                           num_parallel_calls=tf.data.AUTOTUNE)
        else:
            rows = _sampled(tf, tf_dataset(reader), lambda row: row.label, acceptance, seed)
            yield rows.map(lambda row: (feature.tf_model_input(tf, getattr(row, field)),
                                        tf.one_hot(row.label, classes)))
