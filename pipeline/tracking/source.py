"""Where a run came from: the code version and the command line, in MLflow's standard source
tags, so the UI's Source field says what produced the run (and the model card can repeat it)."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pipeline
from pipeline.redaction import redact
from pipeline.tracking import keys


@functools.cache
def code_version() -> tuple[str | None, bool | None, str]:
    """(git commit of the checkout holding this ``pipeline`` package, whether tracked files
    differ from it, the package version); no checkout (an installed wheel, a zip shipped by
    ``spark-submit``): (None, None, version)."""
    try:
        package_version = version("pipeline")
    except PackageNotFoundError:
        package_version = "unknown"
    root = Path(pipeline.__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=30, check=True).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root:
            return None, None, package_version  # some other repository around an install
        return (git("rev-parse", "HEAD"),
                bool(git("status", "--porcelain", "--untracked-files=no")), package_version)
    except (OSError, subprocess.SubprocessError):
        return None, None, package_version


CONFIG_KEY = re.compile(r"-{0,2}[A-Za-z_][\w.-]*")  # ``key=value`` overrides, ``--opt=value``


def _word(arg: str, previous: str | None) -> str:
    """One argument as recorded: a secret key's value redacted, URIs scrubbed everywhere."""
    key, equals, value = arg.partition("=")
    if equals and CONFIG_KEY.fullmatch(key):
        return f"{key}={redact(value, key.lstrip('-'))}"
    if previous is not None and CONFIG_KEY.fullmatch(previous) and previous.startswith("-"):
        return redact(arg, previous.lstrip("-"))  # ``--password VALUE``
    return redact(arg)


def command_line(argv: list[str]) -> str:
    """The command as typed (program name only), with secret values redacted."""
    words = [Path(argv[0]).name if argv else "python"]
    for previous, arg in zip([None, *argv[1:]], argv[1:], strict=False):
        words.append(_word(arg, previous))
    return " ".join(words)


def source_tags() -> dict[str, str]:
    """MLflow's source tags of this process: command line, commit (or package version)."""
    commit, dirty, package_version = code_version()
    tags = {keys.SOURCE_NAME: command_line(sys.argv), keys.CODE_VERSION: package_version}
    if commit is not None:
        tags |= {keys.SOURCE_COMMIT: commit, keys.SOURCE_DIRTY: str(dirty).lower()}
    return tags
