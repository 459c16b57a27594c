"""Start the per-worker function on N Horovod processes: the one place Horovod's runner is used."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)


class TrainingFailedError(PipelineError, RuntimeError):
    """A Horovod worker failed; the message names what the launcher reported."""


def run_local(fn: Callable[..., Any], args: tuple, workers: int, start_timeout_s: int) -> list:
    """Run ``fn(*args)`` on ``workers`` Gloo processes on this machine; results by rank."""
    import horovod

    log.info("launching %d Horovod workers on localhost (Gloo)", workers)
    try:
        return horovod.run(fn, args=args, np=workers, hosts=f"localhost:{workers}",
                           use_gloo=True, start_timeout=start_timeout_s, verbose=0)
    except RuntimeError as exc:
        raise TrainingFailedError(f"Horovod training failed: {exc}") from None
