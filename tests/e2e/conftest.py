"""One ``pipeline demo`` run (about 2.5 minutes) shared by every end-to-end test of the session."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class DemoRun:
    path: Path  # the working folder: data/, mlruns.db and mlartifacts/ under it
    out: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> DemoRun:
    """``pipeline demo`` with the embedded defaults in a fresh folder, with fewer epochs."""
    path = tmp_path_factory.mktemp("demo")
    pipeline = str(Path(sys.executable).with_name("pipeline"))
    out = subprocess.run([pipeline, "demo", "train.epochs=2"], cwd=path,
                         capture_output=True, text=True, timeout=900)
    return DemoRun(path=path, out=out)


@pytest.fixture
def demo_ok(demo) -> DemoRun:
    """The demo run, failing the test at once when the demo itself failed."""
    assert demo.out.returncode == 0, demo.out.stderr[-3000:]
    return demo
