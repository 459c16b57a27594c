"""Filesystem operations on URIs (local, HDFS, S3) through pyarrow: the one place we touch files
that Spark does not write."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from pyarrow import ArrowException
from pyarrow import fs as pafs

from pipeline.errors import PipelineError


class UnsupportedFilesystemError(PipelineError, OSError):
    """pyarrow cannot open the URI's filesystem."""


def to_uri(path_or_uri: str | Path) -> str:
    """A plain path becomes an absolute ``file://`` URI; a URI is returned unchanged."""
    text = str(path_or_uri)
    if "://" in text:
        return text.rstrip("/")
    if text.startswith("file:"):  # Hadoop's spelling, file:/x
        return Path(text[len("file:"):]).as_uri()
    return Path(text).expanduser().resolve().as_uri()


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *parts])


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path within it) for a URI or a plain local path."""
    scheme = urlparse(uri).scheme
    if scheme in ("", "file"):
        return pafs.LocalFileSystem(), urlparse(to_uri(uri)).path
    if scheme == "s3a":  # Hadoop's name for S3 (what Spark reads); pyarrow calls it s3
        uri = "s3" + uri[len("s3a"):]
    try:
        return pafs.FileSystem.from_uri(uri)
    except (ArrowException, OSError) as exc:
        raise UnsupportedFilesystemError(
            f"{uri}: datasets are written through pyarrow, which cannot open this filesystem "
            f"({exc}); use file://, hdfs:// (with libhdfs) or s3://") from None


def exists(uri: str) -> bool:
    filesystem, path = resolve(uri)
    return filesystem.get_file_info(path).type != pafs.FileType.NotFound


def read_text(uri: str) -> str:
    filesystem, path = resolve(uri)
    if filesystem.get_file_info(path).type != pafs.FileType.File:
        raise FileNotFoundError(uri)
    with filesystem.open_input_stream(path) as stream:
        return stream.read().decode("utf-8")


def write_text(uri: str, text: str) -> None:
    filesystem, path = resolve(uri)
    with filesystem.open_output_stream(path) as stream:
        stream.write(text.encode("utf-8"))


def rename(src: str, dst: str) -> None:
    """Rename a directory; atomic on POSIX filesystems and HDFS."""
    filesystem, src_path = resolve(src)
    _, dst_path = resolve(dst)
    filesystem.move(src_path, dst_path)


def delete_dir(uri: str) -> None:
    filesystem, path = resolve(uri)
    if filesystem.get_file_info(path).type != pafs.FileType.NotFound:
        filesystem.delete_dir(path)


def make_dirs(uri: str) -> None:
    filesystem, path = resolve(uri)
    filesystem.create_dir(path, recursive=True)


def list_names(uri: str) -> list[str]:
    """Names of the entries directly inside a directory (empty if it does not exist)."""
    filesystem, path = resolve(uri)
    if filesystem.get_file_info(path).type != pafs.FileType.Directory:
        return []
    return sorted(info.base_name for info in filesystem.get_file_info(pafs.FileSelector(path)))


def copy_dir(src: str, dst: str) -> None:
    """Copy a directory tree between any two filesystems (e.g. local scratch and HDFS)."""
    src_fs, src_path = resolve(src)
    dst_fs, dst_path = resolve(dst)
    dst_fs.create_dir(dst_path, recursive=True)
    pafs.copy_files(src_path, dst_path, source_filesystem=src_fs, destination_filesystem=dst_fs)


def replace_file(src: str, dst: str) -> None:
    """Move a file over ``dst`` (atomic on POSIX; delete-then-move where rename cannot replace)."""
    filesystem, src_path = resolve(src)
    _, dst_path = resolve(dst)
    try:
        filesystem.move(src_path, dst_path)
    except OSError:
        filesystem.delete_file(dst_path)
        filesystem.move(src_path, dst_path)
