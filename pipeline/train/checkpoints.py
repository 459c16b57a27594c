"""Per-epoch checkpoints: model weights, optimiser state (with its step counter, which drives the
learning-rate schedule) and progress, on any filesystem pyarrow opens (local, HDFS, S3).

Layout: ``<train.checkpoint_dir>/<run id>/epoch-NNNN/`` (a TensorFlow checkpoint) and
``latest.json``, replaced only after the epoch folder is complete; the two newest are kept, and
the best epoch's (``train.keep_best``), whose weights the model ends with even after a resume.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import storage
from pipeline.errors import PipelineError

LATEST = "latest.json"
CONFUSION = "confusion.npy"  # in an epoch folder: that epoch's validation confusion matrix


class CheckpointError(PipelineError, ValueError):
    """A checkpoint pointer cannot be read."""

KEEP = 2


@dataclass(frozen=True)
class Checkpoint:
    root: str
    epoch: int  # the last completed epoch, 0-based
    logs: dict[str, float] = field(default_factory=dict)  # that epoch's metrics
    early_stopping: dict[str, float] = field(default_factory=dict)
    best: dict[str, Any] = field(default_factory=dict)  # the best epoch so far: epoch, logs

    @property
    def uri(self) -> str:
        return storage.join(self.root, _epoch_dir(self.epoch))


def _epoch_dir(epoch: int) -> str:
    return f"epoch-{epoch:04d}"


def checkpoint_root(checkpoint_dir: str, run_id: str) -> str:
    return storage.join(storage.to_uri(checkpoint_dir), run_id)


def latest(root: str) -> Checkpoint | None:
    """The newest complete checkpoint under ``root``, or None."""
    pointer = storage.join(root, LATEST)
    try:
        data = json.loads(storage.read_text(pointer))
        return Checkpoint(root=root, epoch=int(data["epoch"]), logs=data.get("logs", {}),
                          early_stopping=data.get("early_stopping", {}),
                          best=data.get("best", {}))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{pointer} is damaged ({type(exc).__name__}: {exc}); the "
                              "epoch folders beside it hold the checkpoints") from None


def save(checkpoint: Checkpoint, model, optimizer, confusion: np.ndarray | None = None) -> None:
    """Write the epoch's checkpoint (and its validation confusion matrix), then point
    ``latest.json`` at it, then drop old ones."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="pipeline-ckpt-") as scratch:
        tf.train.Checkpoint(model=model, optimizer=optimizer).write(str(Path(scratch, "ckpt")))
        if confusion is not None:
            np.save(Path(scratch, CONFUSION), confusion)
        storage.copy_dir(Path(scratch).as_uri(), checkpoint.uri)
    pointer = {"epoch": checkpoint.epoch, "logs": checkpoint.logs,
               "early_stopping": checkpoint.early_stopping, "best": checkpoint.best}
    storage.replace_text(storage.join(checkpoint.root, LATEST), json.dumps(pointer, indent=2))
    kept = {_epoch_dir(checkpoint.epoch - back) for back in range(KEEP)}
    if checkpoint.best:
        kept.add(_epoch_dir(checkpoint.best["epoch"]))
    for name in storage.list_names(checkpoint.root):
        if name.startswith("epoch-") and name not in kept:
            storage.delete_dir(storage.join(checkpoint.root, name))


def restore(checkpoint: Checkpoint, model, optimizer) -> None:
    """Load weights and optimiser state (slots and step counter) saved by ``save``."""
    import tensorflow as tf

    optimizer.build(model.trainable_variables)  # slots must exist to be restored into
    with tempfile.TemporaryDirectory(prefix="pipeline-ckpt-") as scratch:
        storage.copy_dir(checkpoint.uri, Path(scratch).as_uri())
        status = tf.train.Checkpoint(model=model, optimizer=optimizer).read(
            str(Path(scratch, "ckpt")))
        status.assert_existing_objects_matched()


def restore_weights(checkpoint: Checkpoint, model) -> np.ndarray | None:
    """Load only the weights saved by ``save`` (the optimiser state stays as it is); returns
    the epoch's confusion matrix, or None when an older release did not save it."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="pipeline-ckpt-") as scratch:
        storage.copy_dir(checkpoint.uri, Path(scratch).as_uri())
        tf.train.Checkpoint(model=model).read(str(Path(scratch, "ckpt"))).expect_partial()
        confusion = Path(scratch, CONFUSION)
        return np.load(confusion) if confusion.exists() else None
