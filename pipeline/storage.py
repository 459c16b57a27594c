"""Files on any filesystem pyarrow opens (local, ``hdfs://``, ``s3://``; ``s3a://`` is read as
``s3://``): the one place the project reads and writes files.

S3 is configured from the standard AWS environment: credentials and profiles through the AWS
SDK's own chain, ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) and ``AWS_REGION`` (or
``AWS_DEFAULT_REGION``) read here and passed on explicitly, because pyarrow 14 ignores the
endpoint variable. ``configure`` applies the optional ``storage.*`` overrides to that environment,
so Spark executors, Horovod workers and MLflow see the same settings.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pyarrow import ArrowException
from pyarrow import fs as pafs

from pipeline.errors import PipelineError, first_line

OBJECT_STORE_SCHEMES = ("s3", "s3a")
S3_ATTEMPTS = 5  # a throttled or failing request is retried (with backoff) this many times


class UnsupportedFilesystemError(PipelineError, OSError):
    """pyarrow cannot open the URI's filesystem."""


class LocationError(PipelineError, OSError):
    """A location cannot be used: missing bucket, wrong credentials, endpoint down."""


@dataclass(frozen=True)
class S3Settings:
    """Where S3 requests go: the endpoint (None: AWS itself) and the region."""

    endpoint_url: str | None = None
    region: str | None = None

    @classmethod
    def from_env(cls) -> S3Settings:
        env = os.environ
        return cls(env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
                   env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None)


def configure(endpoint_url: str = "", region: str = "") -> None:
    """Apply configuration overrides to the AWS environment every library and child process
    reads; MLflow's S3 client gets the endpoint through its own variable too."""
    if endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = endpoint_url
    if region:
        os.environ["AWS_REGION"] = region
    endpoint = S3Settings.from_env().endpoint_url
    if endpoint:
        os.environ.setdefault("MLFLOW_S3_ENDPOINT_URL", endpoint)


@functools.cache
def _s3_filesystem(settings: S3Settings) -> pafs.S3FileSystem:
    options = {"retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=S3_ATTEMPTS)}
    if settings.endpoint_url:
        endpoint = urlparse(settings.endpoint_url)
        options |= {"endpoint_override": endpoint.netloc or endpoint.path,
                    "scheme": endpoint.scheme or "https"}
    if settings.region:
        options["region"] = settings.region
    return pafs.S3FileSystem(**options)


def is_object_store(uri: str) -> bool:
    """No atomic directory rename here: commits write a single object last instead."""
    return urlparse(uri).scheme in OBJECT_STORE_SCHEMES


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
    if scheme == "file" and not uri.startswith("file://"):  # Hadoop's file:/path is not quoted
        return pafs.LocalFileSystem(), uri[len("file:"):].rstrip("/") or "/"
    if scheme in ("", "file"):
        return pafs.LocalFileSystem(), urlparse(to_uri(uri)).path
    if scheme in OBJECT_STORE_SCHEMES:  # s3a: Hadoop's name for S3 (what Spark reads)
        parsed = urlparse(uri)
        return _s3_filesystem(S3Settings.from_env()), f"{parsed.netloc}{parsed.path}".rstrip("/")
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
    write_bytes(uri, text.encode("utf-8"))


def write_bytes(uri: str, content: bytes) -> None:
    filesystem, path = resolve(uri)
    with filesystem.open_output_stream(path) as stream:
        stream.write(content)


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


def copy_file(src: str, dst: str) -> None:
    """Copy one file; within one S3 endpoint a server-side copy (no bytes through here)."""
    src_fs, src_path = resolve(src)
    dst_fs, dst_path = resolve(dst)
    if src_fs.equals(dst_fs):
        src_fs.copy_file(src_path, dst_path)
    else:
        pafs.copy_files(src_path, dst_path, source_filesystem=src_fs,
                        destination_filesystem=dst_fs)


def replace_file(src: str, dst: str) -> None:
    """Move a file over ``dst`` (atomic on POSIX; delete-then-move where rename cannot replace)."""
    filesystem, src_path = resolve(src)
    _, dst_path = resolve(dst)
    try:
        filesystem.move(src_path, dst_path)
    except OSError:
        filesystem.delete_file(dst_path)
        filesystem.move(src_path, dst_path)


def read_bytes(uri: str) -> bytes:
    filesystem, path = resolve(uri)
    if isinstance(filesystem, pafs.LocalFileSystem):  # a third of pyarrow's cost per small file
        with open(path, "rb") as file:
            return file.read()
    with filesystem.open_input_stream(path) as stream:
        return stream.read()


def delete_file(uri: str) -> None:
    filesystem, path = resolve(uri)
    if filesystem.get_file_info(path).type == pafs.FileType.File:
        filesystem.delete_file(path)


def write_new(uri: str, text: str) -> bool:
    """Create ``uri`` holding ``text`` only if nothing is there yet, atomically; False when it
    exists. Local files: exclusive create; S3: a conditional PUT (``If-None-Match: *``);
    HDFS: a rename, which refuses an existing target."""
    if is_object_store(uri):
        return _s3_put_if_absent(uri, text.encode("utf-8"))
    filesystem, path = resolve(uri)
    if isinstance(filesystem, pafs.LocalFileSystem):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(path, "x", encoding="utf-8") as handle:
                handle.write(text)
        except FileExistsError:
            return False
        return True
    temp = f"{uri}.{os.getpid()}.{os.urandom(4).hex()}"
    write_text(temp, text)
    try:
        rename(temp, uri)
    except OSError:
        delete_file(temp)
        return False
    return True


def _s3_put_if_absent(uri: str, body: bytes) -> bool:
    import boto3
    from botocore.exceptions import ClientError

    parsed, settings = urlparse(uri), S3Settings.from_env()
    client = boto3.client("s3", endpoint_url=settings.endpoint_url, region_name=settings.region)
    try:
        client.put_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"), Body=body,
                          IfNoneMatch="*")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412",
                                                         "ConditionalRequestConflict"):
            return False
        raise
    return True


def check_location(uri: str) -> None:
    """Fail before any work when ``uri``'s filesystem, bucket or credentials cannot be used,
    naming the location (a missing object under a usable bucket is fine)."""
    try:
        filesystem, path = resolve(uri)
        if is_object_store(uri):
            bucket = path.split("/", 1)[0]
            if filesystem.get_file_info(bucket).type == pafs.FileType.NotFound:
                raise LocationError(f"{uri}: bucket '{bucket}' does not exist (endpoint "
                                    f"{S3Settings.from_env().endpoint_url or 'AWS'})")
        filesystem.get_file_info(path)
    except (ArrowException, OSError) as exc:
        if isinstance(exc, PipelineError):
            raise
        raise LocationError(f"{uri} cannot be reached: {first_line(exc)} (check the "
                            "credentials, AWS_ENDPOINT_URL and the bucket)") from None


def list_files(uri: str) -> list[tuple[str, int]]:
    """(URI, size) of every file below ``uri``, recursively, sorted; a file lists itself."""
    filesystem, path = resolve(uri)
    info = filesystem.get_file_info(path)
    prefix = _prefix(uri, path)
    if info.type == pafs.FileType.File:
        return [(prefix + info.path, info.size)]
    found = filesystem.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    return sorted((prefix + f.path, f.size) for f in found if f.type == pafs.FileType.File)


def _prefix(uri: str, path: str) -> str:
    """What goes before a filesystem path to make it a URI again."""
    scheme = urlparse(uri).scheme
    if scheme in ("", "file"):
        return "file://"
    if scheme in OBJECT_STORE_SCHEMES:
        return f"{scheme}://"
    return uri[: len(uri) - len(urlparse(uri).path)]


def age_s(uri: str) -> float:
    """Seconds since the newest file at or below ``uri`` was written (inf when none is)."""
    import time

    filesystem, path = resolve(uri)
    info = filesystem.get_file_info(path)
    files = [info] if info.type == pafs.FileType.File else filesystem.get_file_info(
        pafs.FileSelector(path, recursive=True, allow_not_found=True))
    newest = max((f.mtime.timestamp() for f in files if f.mtime is not None), default=None)
    return time.time() - newest if newest is not None else float("inf")


def replace_text(uri: str, text: str) -> None:
    """Replace a small file as one step for readers: a single PUT on object stores, a write
    aside and a rename elsewhere."""
    if is_object_store(uri):
        write_text(uri, text)
        return
    parent, _, name = uri.rpartition("/")
    staged = f"{parent}/.{name}.{os.getpid()}.tmp"
    write_text(staged, text)
    replace_file(staged, uri)


def scratch_dir(prefix: str) -> str:
    """A new private local folder, removed when the process ends: for model copies and
    downloaded artifacts that must outlive the call that fetched them (Spark re-reads an
    archive added to a session whenever a task starts), which no one would clean otherwise."""
    folder = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder
