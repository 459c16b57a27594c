"""Listing raw inputs on the driver (the driver side of discovery).

Spark's file sources skip empty and hidden files without a word; listing ourselves sees every
file, so none is lost: ``files.read_files`` then reads exactly the listed files.

* Local folders are walked in Python (a py4j call per file costs ~1 ms: minutes for 60,000
  files), following links to folders once; paths are spelled ``file:/path`` (Hadoop's
  spelling, which stored ``source`` and ``path`` columns have always used).
* ``s3://``, ``s3a://`` and ``hdfs://`` are listed through ``pipeline.storage`` (pyarrow), so
  object stores need no Hadoop S3A jars; paths keep the scheme the user gave.
* Any other filesystem (``gs://``, ``abfs://``, ...) is listed through Hadoop's FileSystem,
  whose connectors Spark's own readers then use too.
"""

from __future__ import annotations

import functools
import logging
import os
import posixpath
from collections import defaultdict
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from pyarrow import fs as pafs

from pipeline import storage
from pipeline.errors import InputError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

LOCAL_SCHEMES = ("", "file")
STORAGE_SCHEMES = (*LOCAL_SCHEMES, *storage.OBJECT_STORE_SCHEMES, "hdfs")


def is_local(uri: str) -> bool:
    return urlparse(uri).scheme in LOCAL_SCHEMES


@functools.cache
def _storage_opens(scheme: str, netloc: str) -> bool:
    """Whether pyarrow opens this HDFS (it needs libhdfs); else Spark's Hadoop client reads."""
    try:
        storage.resolve(f"{scheme}://{netloc}/")
    except storage.UnsupportedFilesystemError as exc:
        log.warning("%s://%s is read through Hadoop, not pyarrow: %s", scheme, netloc, exc)
        return False
    return True


def through_storage(uri: str) -> bool:
    """Listed and read through ``pipeline.storage`` (local, s3, s3a, hdfs with libhdfs), rather
    than through Hadoop and Spark's file sources."""
    parsed = urlparse(uri)
    if parsed.scheme not in STORAGE_SCHEMES:
        return False
    return parsed.scheme != "hdfs" or _storage_opens(parsed.scheme, parsed.netloc)


def _filesystem(spark: SparkSession, uri: str) -> tuple[Any, Any]:
    """(Hadoop FileSystem, Path) of ``uri``, through py4j."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def _local_path(uri: str) -> str:
    """The local path of a ``file:`` URI, ``file:/path`` or plain path, read as the storage
    layer reads it."""
    return posixpath.normpath(storage.resolve(uri)[1])


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


def _single_file(uri: str, path: str, size: int, allow_file: bool
                 ) -> tuple[str, list[tuple[str, int]]]:
    """(its folder, [(path, size)]) for an input that is one file, if files are allowed."""
    if not allow_file:
        raise InputError(f"input {uri} is a file; pass a folder, or a listing with --manifest")
    return path.rsplit("/", 1)[0], [(path, size)]


def _list_local(uri: str, allow_file: bool) -> tuple[str, list[tuple[str, int]]]:
    path = _local_path(uri)
    if not os.path.exists(path):
        raise InputError(f"input {uri} does not exist")
    if os.path.isfile(path):
        return _single_file(uri, "file:" + path, os.stat(path).st_size, allow_file)
    return "file:" + path, sorted(_walk_local(path))


def _list_storage(uri: str, allow_file: bool) -> tuple[str, list[tuple[str, int]]]:
    storage.check_location(uri)  # a missing bucket or bad credentials, named, before anything
    filesystem, path = storage.resolve(uri)
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"input {uri} does not exist")
    root = uri.rstrip("/")
    if info.type == pafs.FileType.File:
        return _single_file(uri, root, int(info.size), allow_file)
    return root, [(name, int(size)) for name, size in storage.list_files(root)]


def _list_hadoop(spark: SparkSession, uri: str, allow_file: bool
                 ) -> tuple[str, list[tuple[str, int]]]:
    filesystem, path = _filesystem(spark, uri)
    if not filesystem.exists(path):
        raise InputError(f"input {uri} does not exist")
    status = filesystem.getFileStatus(path)
    if status.isFile():
        return _single_file(uri, status.getPath().toString(), int(status.getLen()), allow_file)
    found = []
    listing = filesystem.listFiles(path, True)
    while listing.hasNext():
        status = listing.next()
        found.append((status.getPath().toString(), int(status.getLen())))
    return filesystem.makeQualified(path).toString(), sorted(found)


def list_tree(spark: SparkSession, uri: str, allow_file: bool = False
              ) -> tuple[str, list[tuple[str, int]]]:
    """(qualified root, [(path, size)] of every file below it, recursively, sorted).

    With ``allow_file``, ``uri`` may be a single file: its folder is the root.
    """
    if is_local(uri):
        return _list_local(uri, allow_file)
    if through_storage(uri):
        return _list_storage(uri, allow_file)
    return _list_hadoop(spark, uri, allow_file)


def read_text(spark: SparkSession, uri: str) -> str:
    """A whole text file (UTF-8; bad bytes become U+FFFD, as Spark's text reader does)."""
    if through_storage(uri):
        filesystem, path = storage.resolve(uri)
        if filesystem.get_file_info(path).type != pafs.FileType.File:
            raise InputError(f"{uri} does not exist or is not a file")
        return storage.read_bytes(uri).decode("utf-8", errors="replace")
    filesystem, path = _filesystem(spark, uri)
    if not filesystem.exists(path) or not filesystem.getFileStatus(path).isFile():
        raise InputError(f"{uri} does not exist or is not a file")
    row = spark.read.text(uri, wholetext=True).first()
    return row[0] if row else ""


def _holds_a_file(folder: str) -> bool:
    """A local folder with a file at any depth (links to folders followed once)."""
    seen = set()
    for current, folders, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(current)
        if real in seen:
            folders[:] = []
            continue
        seen.add(real)
        if files:
            return True
    return False


def _empty_in_storage(root: str, files: list[tuple[str, int]] | None) -> list[str]:
    """Folders directly under ``root`` (an object store or HDFS) with no listed file."""
    filesystem, path = storage.resolve(root)
    folders = [info.base_name for info in filesystem.get_file_info(
        pafs.FileSelector(path, allow_not_found=True)) if info.type == pafs.FileType.Directory]
    if files is None:
        files = storage.list_files(root)
    prefix = root.rstrip("/") + "/"
    used = {name[len(prefix):].split("/", 1)[0] for name, _ in files if name.startswith(prefix)}
    return [folder for folder in folders if folder not in used]


def empty_folders(spark: SparkSession, root: str,
                  files: list[tuple[str, int]] | None = None) -> list[str]:
    """Label folders directly under ``root`` that hold no file at any depth.

    ``files``: ``list_tree``'s listing of ``root``, which spares an object store a second
    listing."""
    if is_local(root):
        path = _local_path(root)
        return sorted(entry.name for entry in os.scandir(path)
                      if entry.is_dir() and not _holds_a_file(entry.path))
    if through_storage(root):
        return sorted(_empty_in_storage(root, files))
    filesystem, path = _filesystem(spark, root)
    empty = []
    for status in filesystem.listStatus(path):
        if status.isDirectory() and not filesystem.listFiles(status.getPath(), True).hasNext():
            empty.append(status.getPath().getName())
    return sorted(empty)


def _files_in(spark: SparkSession, parent: str) -> dict[str, tuple[str, int]]:
    """Name -> (path, size) of the files directly in ``parent`` (none if it is no folder)."""
    if is_local(parent):
        path = _local_path(parent)
        if not os.path.isdir(path):
            return {}
        return {entry.name: ("file:" + os.path.join(path, entry.name), entry.stat().st_size)
                for entry in os.scandir(path) if entry.is_file()}
    if through_storage(parent):
        filesystem, path = storage.resolve(parent)
        infos = filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        return {info.base_name: (f"{parent.rstrip('/')}/{info.base_name}", int(info.size))
                for info in infos if info.type == pafs.FileType.File}
    filesystem, path = _filesystem(spark, parent)
    if not filesystem.exists(path) or not filesystem.getFileStatus(path).isDirectory():
        return {}
    return {status.getPath().getName(): (status.getPath().toString(), int(status.getLen()))
            for status in filesystem.listStatus(path) if status.isFile()}


def locate(spark: SparkSession, paths: list[str]) -> dict[str, tuple[str, int]]:
    """For each of ``paths`` that exists as a file: (qualified path, size).

    Lists each parent folder once rather than asking for every file.
    """
    by_parent: dict[str, list[str]] = defaultdict(list)
    for p in paths:
        by_parent[p.rsplit("/", 1)[0]].append(p)
    found: dict[str, tuple[str, int]] = {}
    for parent, members in by_parent.items():
        files = _files_in(spark, parent)
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
