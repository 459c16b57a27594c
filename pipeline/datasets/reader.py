"""Reading dataset versions with Petastorm: sharded endless streams for training, exact
one-pass reads for evaluation. The only module that opens Petastorm readers.

docs/STACK.md: thread-pool readers with a finite ``num_epochs`` can silently yield nothing, so
training reads endlessly (``num_epochs=None``) and exact reads use the dummy pool and
check their row count against the manifest.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stdout

import numpy as np

from pipeline import storage
from pipeline.datasets.features import feature_of
from pipeline.datasets.manifest import Manifest
from pipeline.errors import PipelineError

warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm(\..*)?$")
# Field names are matched exactly by us; petastorm warns that 'label' no longer matches 'label_name'
warnings.filterwarnings("ignore", message="schema_fields behavior has changed",
                        module=r"petastorm(\..*)?$")
# training reads stored image bytes with make_batch_reader on purpose (decoded in tf.data)
warnings.filterwarnings("ignore", message="Please use make_reader", module=r"petastorm(\..*)?$")


class ShardingError(PipelineError, ValueError):
    """The dataset cannot be split evenly enough across the requested workers."""


def check_shardable(split: str, row_groups: int, workers: int) -> None:
    if row_groups < workers:
        raise ShardingError(
            f"the {split} split has {row_groups} row groups but {workers} workers need at least "
            f"one each; re-ingest with a smaller dataset.rows_per_row_group or use fewer workers")


@contextmanager
def _open_reader(dataset_url: str, split: str, fields: Sequence[str], columns: bool = False,
                 **options):
    """A Petastorm reader over exactly ``fields``, closed without its 'Cache cleanup' print.

    ``columns``: a batch reader yielding one row group's stored columns at a time (images stay
    encoded, to be decoded in parallel by TensorFlow); otherwise rows decoded by Petastorm.
    """
    from petastorm import make_batch_reader, make_reader

    factory = make_batch_reader if columns else make_reader
    reader = factory(storage.join(dataset_url, split), schema_fields=list(fields), **options)
    try:
        yield reader
    finally:
        with redirect_stdout(io.StringIO()):
            reader.stop()
            reader.join()
            reader.cleanup_cache()


def training_stream(dataset_url: str, split: str, fields: Sequence[str], shard: int,
                    shard_count: int, seed: int, reader_workers: int, columns: bool = False):
    """An endless Petastorm reader over one shard of ``split``, row groups shuffled with
    ``seed`` (a context manager); ``columns`` as in ``_open_reader``."""
    return _open_reader(dataset_url, split, fields, columns, num_epochs=None, cur_shard=shard,
                        shard_count=shard_count, shuffle_row_groups=True, seed=seed,
                        reader_pool_type="thread", workers_count=reader_workers)


def tf_dataset(reader):
    """Petastorm row reader -> ``tf.data.Dataset`` of named tuples."""
    from petastorm.tf_utils import make_petastorm_dataset

    return make_petastorm_dataset(reader)


def tf_column_dataset(reader, signature: dict):
    """Petastorm batch reader -> ``tf.data.Dataset`` of single rows as dicts of tensors.

    ``signature``: field -> ``tf.TensorSpec`` of one row's stored value (``tf.string`` for an
    encoded image). Petastorm's own converter cannot be used here: it types encoded image
    columns by their decoded dtype.
    """
    import tensorflow as tf

    def row_groups():
        for group in reader:
            yield {name: getattr(group, name) for name in signature}

    batched = {name: tf.TensorSpec([None, *spec.shape], spec.dtype)
               for name, spec in signature.items()}
    return tf.data.Dataset.from_generator(row_groups, output_signature=batched).unbatch()


def read_batches(dataset_url: str, split: str, fields: Sequence[str], batch_size: int,
                 shard: int | None = None, shard_count: int | None = None
                 ) -> Iterator[dict[str, np.ndarray]]:
    """Every row of ``split`` (or of one shard) exactly once, in batches of numpy arrays."""
    with _open_reader(dataset_url, split, fields, num_epochs=1, cur_shard=shard,
                      shard_count=shard_count, shuffle_row_groups=False,
                      reader_pool_type="dummy") as reader:
        columns: dict[str, list] = {name: [] for name in fields}
        for row in reader:
            for name in fields:
                columns[name].append(getattr(row, name))
            if len(columns[fields[0]]) == batch_size:
                yield {name: np.stack(values) for name, values in columns.items()}
                columns = {name: [] for name in fields}
        if columns[fields[0]]:
            yield {name: np.stack(values) for name, values in columns.items()}


def model_batches(dataset_url: str, manifest: Manifest, split: str, batch_size: int,
                  shard: int | None = None, shard_count: int | None = None
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(model inputs, int64 labels) of every row of ``split`` (or of one shard) exactly once."""
    feature = feature_of(manifest)
    for batch in read_batches(dataset_url, split, (feature.field, "label"), batch_size, shard,
                              shard_count):
        yield feature.model_input(batch[feature.field]), batch["label"].astype(np.int64)
