"""One raw image file -> one record: accepted (label, split, PNG, hash) or rejected (reason)."""

from __future__ import annotations

from typing import NamedTuple

from pipeline.ingest.images import ImageSpec, prepare_image
from pipeline.ingest.labels import label_from_path
from pipeline.ingest.rejection import Rejected
from pipeline.ingest.split import assign_split


class ImageRecord(NamedTuple):
    """A cleaned input. Accepted records have ``split``; rejected ones ``reason`` and ``detail``."""

    path: str
    label_name: str | None
    split: str | None
    image: bytes | None
    content_hash: str | None
    reason: str | None
    detail: str | None


def clean_image_file(path: str, content: bytes, root: str, spec: ImageSpec,
                     ratios: dict[str, float]) -> ImageRecord:
    """Never raises: any failure becomes a rejected record naming the reason."""
    label = None
    try:
        label = label_from_path(path, root)
        prepared = prepare_image(bytes(content), spec)
        split = assign_split(prepared.content_hash, ratios)
        return ImageRecord(path, label, split, prepared.png, prepared.content_hash, None, None)
    except Rejected as rejected:
        return ImageRecord(path, label, None, None, None, rejected.reason, rejected.detail)
    except Exception as exc:  # a decoder bug must quarantine one file, not kill the job
        return ImageRecord(path, label, None, None, None, "unexpected_error",
                           f"{type(exc).__name__}: {exc}")


def skipped_file_record(path: str, size: int) -> ImageRecord:
    """A listed file that Spark's reader skipped: say why, so that it is not silently lost."""
    name = path.rsplit("/", 1)[-1]
    if size == 0:
        reason, detail = "empty_file", "the file has no bytes"
    elif name.startswith((".", "_")):
        reason, detail = "hidden_file", "names starting with '.' or '_' are hidden from Spark"
    else:
        reason, detail = "unreadable", "listed but not returned by Spark's binaryFile reader"
    return ImageRecord(path, None, None, None, None, reason, detail)
