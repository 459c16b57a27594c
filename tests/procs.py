"""Running the ``pipeline`` command as a user would, and waiting for what it says."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

PIPELINE = str(Path(sys.executable).with_name("pipeline"))


def run_pipeline(args: list[str], cwd: Path, timeout: float = 900,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PIPELINE, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


class Background:
    """``pipeline ARGS`` in its own process group, its stderr in a file we can watch."""

    def __init__(self, args: list[str], cwd: Path, merge_output: bool = False,
                 env: dict[str, str] | None = None) -> None:
        # merge_output: stdout goes to the watched file too (spark-submit prints the driver's
        # stderr on its stdout); finish() then returns "" as stdout
        self.log = cwd / f"pipeline-{os.getpid()}-{time.monotonic_ns()}.log"
        self._log_file = self.log.open("wb")
        self.process = subprocess.Popen(
            [PIPELINE, *args], cwd=cwd,
            stdout=self._log_file if merge_output else subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_output else self._log_file,
            start_new_session=True, env=env)

    def wait_for(self, text: str, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.log.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                raise AssertionError(f"exited ({self.process.returncode}) before {text!r}:\n"
                                     + self.log.read_text(errors="replace")[-3000:])
            time.sleep(0.2)
        raise AssertionError(f"{text!r} did not appear in {timeout_s}s")

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self._log_file.close()

    def finish(self, timeout_s: float = 900) -> tuple[int, str, str]:
        out, _ = self.process.communicate(timeout=timeout_s)
        self._log_file.close()
        return (self.process.returncode, (out or b"").decode(),
                self.log.read_text(errors="replace"))


def wait_until_answers(url: str, process: subprocess.Popen, what: str,
                       output: Callable[[], str], timeout_s: float = 120) -> None:
    """Poll ``url`` until it answers 200; fail with ``what``'s output when its process exits
    or ``timeout_s`` passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{what} did not answer at {url} within {timeout_s:.0f} s:\n"
                                 + output()[-3000:])
        time.sleep(0.3)
