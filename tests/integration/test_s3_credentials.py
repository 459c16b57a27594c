"""Wrong or missing S3 credentials, as a user meets them: ``pipeline ingest`` stops with one
clear error that names the location, before any file is read, and no stack trace (Python or
Java). An S3 API that checks signatures: moto_server with its authentication on."""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.procs import run_pipeline
from tests.s3 import CREDENTIALS, start_s3_server


@pytest.fixture(scope="module")
def checking_server(tmp_path_factory):
    """moto_server that accepts one unsigned request (making the bucket), then only requests
    signed with credentials it knows: none of ours."""
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "1"  # read by the server at start
    try:
        servers = start_s3_server(tmp_path_factory.mktemp("auth") / "moto.log")
        server = next(servers)
    finally:
        del os.environ["INITIAL_NO_AUTH_ACTION_COUNT"]
    server.bucket("creds")
    yield server
    servers.close()


def _env(server, **credentials: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**clean, "AWS_ENDPOINT_URL": server.endpoint, "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true", **credentials}


@pytest.mark.parametrize("credentials", [
    {"AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG0", "AWS_SECRET_ACCESS_KEY": "wrong"},
    {},  # none at all
], ids=["wrong", "missing"])
def test_bad_credentials_stop_ingest_with_the_location_named(checking_server, credentials,
                                                             tmp_path):
    assert set(credentials) <= set(CREDENTIALS)
    out = run_pipeline(["ingest", "images", "--input", "s3://creds/raw", "--output",
                        "s3://creds/ds", "--json"], tmp_path,
                       env=_env(checking_server, HOME=str(tmp_path), **credentials))
    assert out.returncode != 0
    error = json.loads(out.stdout)["error"]
    assert re.search(r"s3://creds/(raw|ds) cannot be reached", error["message"]), error
    assert "credentials" in error["message"]
    assert "Traceback" not in out.stderr and "py4j" not in out.stderr
    assert "at org.apache" not in out.stderr  # no Java stack either
    assert "discovered" not in out.stderr  # nothing was listed, let alone read
