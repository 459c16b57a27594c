"""Throttled and failing S3 requests: retried with backoff, and when they keep failing the
commit fails with nothing committed. A small HTTP proxy in front of the real S3 API
(moto_server) answers ``503 SlowDown`` as often as the test says."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pytest

from pipeline import storage
from pipeline.datasets import commit
from pipeline.datasets.manifest import NotADatasetError, open_version
from tests.integration.test_object_store import _manifest

SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")


class FlakyProxy:
    """Forwards S3 requests to ``upstream``, failing the next ``fail_next`` with 503 first
    (``fail_next = -1``: all of them); counts what it failed."""

    def __init__(self, upstream: str) -> None:
        self.upstream, self.fail_next, self.failed = urlparse(upstream).netloc, 0, 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.fail_next:
                    proxy.fail_next -= proxy.fail_next > 0
                    proxy.failed += 1
                    return self._answer(503, {"Content-Type": "application/xml"}, SLOW_DOWN)
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=30)
                upstream.request(self.command, self.path, body or None, dict(self.headers))
                answer = upstream.getresponse()
                self._answer(answer.status, dict(answer.getheaders()), answer.read())

            def _answer(self, status: int, headers: dict, body: bytes) -> None:
                self.send_response(status)
                length = str(len(body))
                for key, value in headers.items():
                    if key.lower() == "content-length" and self.command == "HEAD":
                        length = value  # the object's size, though no body follows
                    elif key.lower() not in ("content-length", "transfer-encoding",
                                             "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def flaky(s3, monkeypatch):
    proxy = FlakyProxy(s3.endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    yield proxy
    proxy.server.shutdown()


def test_throttled_requests_are_retried(s3, flaky):
    root = s3.bucket("throttled")
    flaky.fail_next = 2
    storage.write_text(f"{root}/a.txt", "hello")
    flaky.fail_next = 2
    assert storage.read_text(f"{root}/a.txt") == "hello"
    assert flaky.failed == 4  # both calls met two 503s each, and still succeeded


def test_requests_that_keep_failing_fail_the_commit_with_nothing_committed(s3, flaky):
    root = s3.bucket("failing") + "/ds"
    pending = commit.begin(root, "new-version")
    storage.write_text(storage.join(pending.data_uri, "train", "part-0.parquet"), "new")
    flaky.fail_next = -1  # S3 stops answering properly before the manifest
    with pytest.raises(OSError):
        pending.finish(_manifest("new"))
    assert flaky.failed >= storage.S3_ATTEMPTS  # retried, then given up
    flaky.fail_next = 0
    with pytest.raises(NotADatasetError):
        open_version(root)
    assert not any(k.endswith("manifest.json") for k in s3.keys("failing"))
