"""Bundled real data sets, written out as raw files the way a user's data arrives."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def folder_written_whole(target: Path) -> Iterator[Path]:
    """Yield a hidden sibling folder to fill; it becomes ``target`` only if the block succeeds,
    so an interrupted run never leaves a partial tree that a later run would take as done."""
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    try:
        yield staging
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
