"""The base of every error the pipeline reports to people as a message, not a stack trace.

Each error class owns the exit status of the command it ends (``exit_code``); README.md,
"Exit codes", lists them all.
"""

from __future__ import annotations

from typing import ClassVar


class PipelineError(Exception):
    """A failure with a message that says what is wrong and, where possible, what to do."""

    exit_code: ClassVar[int] = 1


class InputError(PipelineError):
    """The input of a job is missing, empty or unusable as a whole."""


class UsageError(PipelineError):
    """Arguments argparse accepts but that conflict or are out of range: exit 2, like argparse."""

    exit_code = 2


class QuarantineGateError(PipelineError):
    """More inputs were quarantined than ``--max-bad-fraction`` allows (the version is kept)."""

    exit_code = 3


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (or its type), for a one-line report."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]
