"""Committing a dataset version written aside: a reader sees a whole version or none.

``staging_uri`` names the hidden folder a version is written into; ``commit`` moves it into
place by the write mode (``error``, ``overwrite``, ``new-version``), ``claim_next_version``
takes the next free ``vNNNN`` in a folder of versions.
"""

from __future__ import annotations

import logging
import uuid
from typing import Literal

from pipeline import storage
from pipeline.datasets.manifest import LATEST_NAME, MANIFEST_NAME
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

WriteMode = Literal["error", "overwrite", "new-version"]


class OutputExistsError(PipelineError, FileExistsError):
    """The output already holds a dataset version and the mode says not to replace it."""


def check_output(output_uri: str, mode: WriteMode) -> None:
    """Fail before any work when the output exists and may not be replaced."""
    if mode == "error" and storage.exists(output_uri):
        raise OutputExistsError(
            f"{output_uri} already exists; pass --mode overwrite to replace it, or "
            "--mode new-version to add a version beside the existing ones")
    if mode == "new-version" and storage.exists(storage.join(output_uri, MANIFEST_NAME)):
        raise OutputExistsError(
            f"{output_uri} is a dataset version itself; --mode new-version needs a folder of "
            "versions")


def staging_uri(output_uri: str, mode: WriteMode) -> str:
    """A hidden folder beside (or, for new versions, inside) the output; no reader opens it."""
    token = uuid.uuid4().hex[:8]
    if mode == "new-version":
        return storage.join(output_uri, f".staging-{token}")
    parent, _, name = output_uri.rstrip("/").rpartition("/")
    return storage.join(parent, f".{name}.staging-{token}")


def next_version_name(collection_uri: str) -> str:
    numbers = [int(n[1:]) for n in storage.list_names(collection_uri)
               if n.startswith("v") and n[1:].isdigit()]
    return f"v{max(numbers, default=0) + 1:04d}"


def claim_next_version(staging: str, collection_uri: str, attempts: int = 20) -> str:
    """Rename ``staging`` to the next free ``vNNNN``; a concurrent job that took the number
    first makes us try the next one."""
    for _ in range(attempts):
        target = storage.join(collection_uri, next_version_name(collection_uri))
        if storage.exists(target):
            continue
        try:
            storage.rename(staging, target)
        except OSError:
            if storage.exists(storage.join(staging, MANIFEST_NAME)):
                continue  # someone else took the name between our check and our rename
            raise
        return target
    raise OSError(f"no free version name in {collection_uri} after {attempts} attempts")


def commit(staging: str, output_uri: str, mode: WriteMode) -> str:
    """Move the finished version into place; a reader sees a whole version or none.

    Returns the URI of the committed version.
    """
    if mode == "new-version":
        target = claim_next_version(staging, output_uri)
        pointer = storage.join(output_uri, f".{LATEST_NAME}.{uuid.uuid4().hex[:8]}")
        storage.write_text(pointer, target.rsplit("/", 1)[1] + "\n")
        storage.rename(pointer, storage.join(output_uri, LATEST_NAME))
    elif storage.exists(output_uri):
        check_output(output_uri, mode)
        parent, _, name = output_uri.rpartition("/")
        # not a ".staging-" name: the previous version must not look safe to delete
        previous = storage.join(parent, f".{name}.previous-{uuid.uuid4().hex[:8]}")
        storage.rename(output_uri, previous)
        try:
            storage.rename(staging, output_uri)
        except BaseException:
            storage.rename(previous, output_uri)  # put the old version back
            raise
        storage.delete_dir(previous)
        target = output_uri
    else:
        storage.rename(staging, output_uri)
        target = output_uri
    log.info("committed dataset version %s", target)
    return target
