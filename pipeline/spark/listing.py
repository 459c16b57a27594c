"""Listing raw inputs through Hadoop's FileSystem (the driver side of discovery).

Spark's file sources skip empty and hidden files without a word; listing through Hadoop
ourselves sees every file on any filesystem Spark reads (file, hdfs, s3a), so none is lost:
``files.read_files`` then reads the listed files and names those Spark did not return.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from pipeline.errors import InputError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def _filesystem(spark: SparkSession, uri: str):
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def _walk_local(root: str) -> list[tuple[str, int]]:
    """Every file below a local folder, following links to folders once (no cycles)."""
    found, seen = [], set()
    for folder, folders, files in os.walk(root, followlinks=True):
        folders.sort()  # the same tree gives the same listing on every filesystem
        real = os.path.realpath(folder)
        if real in seen:
            folders[:] = []
            continue
        seen.add(real)
        for name in files:
            full = os.path.join(folder, name)
            try:
                found.append(("file:" + full, os.stat(full).st_size))
            except OSError:  # a dangling link: listed, and quarantined as unreadable later
                found.append(("file:" + full, -1))
    return found


def list_tree(spark: SparkSession, uri: str, allow_file: bool = False
              ) -> tuple[str, list[tuple[str, int]]]:
    """(qualified root, [(path, size)] of every file below it, recursively).

    With ``allow_file``, ``uri`` may be a single file: its folder is the root.

    Local folders are walked in Python (a py4j call per file costs ~1 ms: minutes for
    60,000 files); other filesystems are listed through Hadoop.
    """
    filesystem, path = _filesystem(spark, uri)
    if not filesystem.exists(path):
        raise InputError(f"input {uri} does not exist")
    status = filesystem.getFileStatus(path)
    if status.isFile():
        if not allow_file:
            raise InputError(f"input {uri} is a file; pass a folder, or a listing with "
                             "--manifest")
        qualified = status.getPath().toString()
        return qualified.rsplit("/", 1)[0], [(qualified, int(status.getLen()))]
    root = filesystem.makeQualified(path).toString()
    if urlparse(root).scheme == "file":
        return root, sorted(_walk_local(urlparse(root).path))
    found = []
    listing = filesystem.listFiles(path, True)
    while listing.hasNext():
        status = listing.next()
        found.append((status.getPath().toString(), int(status.getLen())))
    return root, sorted(found)


def read_text(spark: SparkSession, uri: str) -> str:
    """A whole text file (UTF-8), read through Hadoop with Spark's filesystem settings."""
    filesystem, path = _filesystem(spark, uri)
    if not filesystem.exists(path) or not filesystem.getFileStatus(path).isFile():
        raise InputError(f"{uri} does not exist or is not a file")
    row = spark.read.text(uri, wholetext=True).first()
    return row[0] if row else ""


def empty_folders(spark: SparkSession, root: str) -> list[str]:
    """Label folders directly under ``root`` that hold no file at any depth."""
    filesystem, path = _filesystem(spark, root)
    empty = []
    for status in filesystem.listStatus(path):
        if status.isDirectory() and not filesystem.listFiles(status.getPath(), True).hasNext():
            empty.append(status.getPath().getName())
    return sorted(empty)


def locate(spark: SparkSession, paths: list[str]) -> dict[str, tuple[str, int]]:
    """For each of ``paths`` that exists as a file: (qualified path, size).

    Lists each parent folder once rather than asking for every file.
    """
    by_parent: dict[str, list[str]] = defaultdict(list)
    for p in paths:
        by_parent[p.rsplit("/", 1)[0]].append(p)
    found: dict[str, tuple[str, int]] = {}
    for parent, members in by_parent.items():
        filesystem, path = _filesystem(spark, parent)
        if not filesystem.exists(path) or not filesystem.getFileStatus(path).isDirectory():
            continue
        files = {status.getPath().getName(): (status.getPath().toString(), int(status.getLen()))
                 for status in filesystem.listStatus(path) if status.isFile()}
        for member in members:
            name = member.rsplit("/", 1)[1]
            if name in files:
                found[member] = files[name]
    return found


def escapes_root(path: str, root: str) -> bool:
    """A local file whose real location (symbolic links resolved) is outside ``root``."""
    if urlparse(path).scheme != "file":
        return False
    real = os.path.realpath(urlparse(path).path)
    real_root = os.path.realpath(urlparse(root).path)
    return os.path.commonpath([real, real_root]) != real_root
