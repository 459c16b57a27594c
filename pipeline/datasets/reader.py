"""Reading dataset versions with Petastorm: sharded endless streams for training, exact
one-pass reads for evaluation. The only module that opens Petastorm readers.

docs/STACK.md: thread-pool readers with a finite ``num_epochs`` can silently yield nothing, so
training reads endlessly (``num_epochs=None``) and exact reads use the dummy pool and
check their row count against the manifest.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from functools import partial

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


def _s3fs_options() -> dict:
    """s3fs settings for the store the storage layer uses (endpoint and region from the AWS
    environment; credentials through botocore's own chain)."""
    settings = storage.S3Settings.from_env()
    client = {key: value for key, value in (("endpoint_url", settings.endpoint_url),
                                             ("region_name", settings.region)) if value}
    return {"client_kwargs": client} if client else {}


def s3_filesystem(options: dict | None = None):
    """s3fs in the legacy ``pyarrow.filesystem`` wrapper Petastorm 0.13 needs with pyarrow 14
    (plain s3fs fails there: 'validate_schema is not yet supported with the new Dataset API');
    the wrapper's ``walk`` is fsspec's, because pyarrow's calls a coroutine of today's s3fs."""
    import s3fs
    from pyarrow.filesystem import S3FSWrapper, _sanitize_s3, _stringify_path

    class _Wrapper(S3FSWrapper):
        def walk(self, path, refresh=False):
            if refresh:
                self.fs.invalidate_cache(path)
            return self.fs.walk(_sanitize_s3(_stringify_path(path)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return _Wrapper(s3fs.S3FileSystem(**(options if options is not None
                                             else _s3fs_options())))


def petastorm_filesystem(dataset_url: str):
    """The filesystem Petastorm should use for ``dataset_url``: the wrapped s3fs on object
    stores; None elsewhere, where Petastorm's own resolver is right."""
    return s3_filesystem() if storage.is_object_store(dataset_url) else None


def filesystem_factory(dataset_url: str) -> Callable[[], object] | None:
    """A picklable factory of that filesystem, for the metadata Petastorm writes after the
    Parquet files (Spark tasks rebuild it from the factory)."""
    if not storage.is_object_store(dataset_url):
        return None
    return partial(s3_filesystem, _s3fs_options())


class ShardingError(PipelineError, ValueError):
    """The dataset cannot be split evenly enough across the requested workers."""


def check_shardable(split: str, row_groups: int, workers: int) -> None:
    if row_groups < workers:
        raise ShardingError(
            f"the {split} split has {row_groups} row groups but {workers} workers need at least "
            f"one each; re-ingest with a larger dataset.min_row_groups (or smaller "
            f"dataset.rows_per_row_group), or use fewer workers")


@contextmanager
def _open_reader(dataset_url: str, split: str, fields: Sequence[str], columns: bool = False,
                 **options):
    """A Petastorm reader over exactly ``fields``, closed without its 'Cache cleanup' print.

    ``columns``: a batch reader yielding one row group's stored columns at a time (images stay
    encoded, to be decoded in parallel by TensorFlow); otherwise rows decoded by Petastorm.
    """
    from petastorm import make_batch_reader, make_reader

    factory = make_batch_reader if columns else make_reader
    reader = factory(storage.join(dataset_url, split), schema_fields=list(fields),
                     filesystem=petastorm_filesystem(dataset_url), **options)
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
