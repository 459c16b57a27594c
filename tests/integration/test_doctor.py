"""``pipeline doctor`` and the set-up script, against the real machine."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.procs import run_pipeline

_run = run_pipeline


def test_doctor_passes_here(tmp_path):
    out = _run(["doctor", "spark.master=local[1]"], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    for check in ("python", "java", "spark", "horovod", "mlflow"):
        row = next(line for line in lines if line.startswith(check + " "))
        assert " ok " in row, row
    assert (tmp_path / "mlruns.db").exists()


def test_doctor_names_a_broken_tracking_store(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store's folder should be")
    out = _run(["doctor", "--check", "python", "--check", "mlflow",
                f"mlflow.tracking_uri=sqlite:///{blocker}/mlruns.db"], tmp_path)
    assert out.returncode == 1
    rows = out.stdout.splitlines()[2:]  # only the checks asked for, in the table's order
    assert [row.split()[0] for row in rows] == ["python", "mlflow"]
    assert "FAIL" in rows[1] and str(blocker) in rows[1] and " ok " in rows[0]
    assert "failed: mlflow" in out.stderr


def _path_without_java(tmp_path: Path) -> str:
    """A PATH holding only the tools the commands need, and no java."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "cat", "sha256sum", "cut", "bash", "env", "uname", "python3"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def test_doctor_says_how_to_install_java_when_missing(tmp_path):
    env = {**os.environ, "PATH": _path_without_java(tmp_path), "JAVA_HOME": ""}
    out = _run(["doctor", "--check", "java", "--check", "spark"], tmp_path, env=env)
    assert out.returncode == 1
    for check in ("java", "spark"):  # Spark cannot start either, and says why
        row = next(line for line in out.stdout.splitlines() if line.startswith(check + " "))
        assert "FAIL" in row and "apt-get install" in row, row


def test_setup_script_says_how_to_install_java_when_missing(tmp_path):
    env = {"PATH": _path_without_java(tmp_path), "HOME": str(tmp_path)}
    out = subprocess.run(["bash", str(REPO / "deploy" / "setup_env.sh")], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "Java was not found" in out.stderr and "openjdk-17" in out.stderr


@pytest.mark.timeout(1900)  # the first call may build the whole venv (bounded at 1800 s)
def test_setup_script_second_call_skips_everything():
    script = ["bash", str(REPO / "deploy" / "setup_env.sh")]
    first = subprocess.run(script, capture_output=True, text=True, timeout=1800, cwd=REPO)
    assert first.returncode == 0, first.stderr
    stamps = sorted((REPO / ".venv").glob(".setup-*"))
    assert len(stamps) == 1
    second = subprocess.run(script, capture_output=True, text=True, timeout=30, cwd=REPO)
    assert second.returncode == 0, second.stderr
    assert second.stdout == "" and second.stderr == ""
    assert sorted((REPO / ".venv").glob(".setup-*")) == stamps
