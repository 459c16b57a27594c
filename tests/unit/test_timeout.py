"""The per-test timeout (pyproject.toml): a hung test fails with its stack, CI does not hang."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.conftest import REPO

HANGS = '''
import time

import pytest


def _wait_for_what_never_comes():
    time.sleep(120)


@pytest.mark.timeout(2)
def test_hangs():
    _wait_for_what_never_comes()
'''


def test_every_test_has_a_timeout_that_keeps_the_main_thread(pytestconfig):
    assert float(pytestconfig.getini("timeout")) >= 60
    assert pytestconfig.getini("timeout_method") == "signal"  # Spark's threads stay untouched


def test_a_hung_test_fails_in_time_and_shows_where_it_hung(tmp_path):
    (tmp_path / "test_hang.py").write_text(HANGS)
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(REPO / "pyproject.toml"), "--rootdir",
         str(tmp_path), "-p", "no:cacheprovider", str(tmp_path / "test_hang.py")],
        capture_output=True, text=True, timeout=90, cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert time.monotonic() - started < 60
    assert "Failed: Timeout (>2.0s) from pytest-timeout" in out.stdout, out.stdout
    # the traceback runs down to the line that hung
    assert ">       time.sleep(120)" in out.stdout and "test_hang.py:8: Failed" in out.stdout
