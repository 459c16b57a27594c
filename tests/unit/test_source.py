"""Runs say where they came from: the command line (secrets redacted) and the code version."""

from __future__ import annotations

import subprocess

import pytest

from pipeline.tracking.source import code_version, command_line
from tests.conftest import REPO


def test_the_command_line_is_recorded_without_its_secrets():
    line = command_line(["/venv/bin/pipeline", "train", "--data", "s3://b/digits",
                         "spark.conf.spark.hadoop.fs.s3a.secret.key=abc123",
                         "mlflow.tracking_uri=http://bob:pw123@h:5000", "--epochs", "3"])
    assert line.startswith("pipeline train --data s3://b/digits spark.conf.spark.hadoop")
    assert line.endswith("--epochs 3")
    assert "abc123" not in line and "pw123" not in line and line.count("<redacted>") == 2


@pytest.mark.parametrize("args", [
    ["--input", "https://acct.blob.core.windows.net/c?sig=SECRET&sv=1"],
    ["--input=https://acct.blob.core.windows.net/c?sig=SECRET"],
    ["--input=s3://b/k?X-Amz-Signature=SECRET"],
    ["--conf=spark.hadoop.fs.s3a.secret.key=SECRET"],
    ["--password", "SECRET"],
    ["mlflow.tracking_uri=https://SECRET@tracking.example"],
])
def test_no_shape_of_secret_on_a_command_line_is_recorded(args):
    line = command_line(["pipeline", "ingest", *args])
    assert "SECRET" not in line and "<redacted>" in line


def test_a_checkout_gives_its_commit_and_whether_it_was_changed():
    commit, dirty, version = code_version()
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    changed = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain",
                              "--untracked-files=no"], capture_output=True, text=True,
                             check=True).stdout.strip() != ""
    assert commit == head and dirty is changed
    assert version == "0.1.0"
