"""A real S3 API on 127.0.0.1 for the tests: moto's server mode (``moto_server``), reached over
HTTP by pyarrow, s3fs, boto3 and MLflow exactly as they reach AWS, configured only through the
standard AWS environment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.procs import wait_until_answers

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_REGION": "us-east-1"}


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to use this server, and nothing else."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def bucket(self, name: str) -> str:
        """A new bucket; its ``s3://`` URI."""
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}"

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                         Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_s3_server(log: Path) -> Iterator[S3Server]:
    """``moto_server`` on a free port of 127.0.0.1 until the generator is closed."""
    port = _free_port()
    server = Path(sys.executable).with_name("moto_server")
    with log.open("wb") as out:
        process = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=out, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(f"{endpoint}/moto-api/", process, "moto_server", log.read_text, 60)
    except AssertionError:
        process.kill()
        raise
    try:
        yield S3Server(endpoint)
    finally:
        process.terminate()
        process.wait(timeout=30)


def use_server(server: S3Server) -> dict[str, str | None]:
    """Point this process (and its children) at ``server``; returns what to restore."""
    saved = {key: os.environ.get(key) for key in server.env}
    os.environ.update(server.env)
    return saved
