"""MLflow writes from inside training: retried with exponential backoff, never fatal.

A tracking server that blips must not kill hours of training; what still fails after the
retries is kept and reported at the end of the job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from pipeline.errors import first_line

log = logging.getLogger("pipeline.tracking")
MODEL_WRITE = "the model"  # what a failed model upload is reported as: nothing to register


class Retrying:
    """``retrying(what, fn, *args)`` calls ``fn`` up to ``attempts`` times; True if it worked."""

    def __init__(self, attempts: int = 4, first_delay_s: float = 0.5) -> None:
        self.attempts = attempts
        self.first_delay_s = first_delay_s
        self.failures: list[str] = []

    def __call__(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        delay = self.first_delay_s
        for attempt in range(1, self.attempts + 1):
            try:
                fn(*args, **kwargs)
                return True
            except Exception as exc:  # MLflow, HTTP and filesystem errors alike
                reason = first_line(exc)
                if attempt == self.attempts:
                    self.failures.append(f"{what}: {reason}")
                    log.warning("MLflow: %s failed %d times, giving up: %s", what, attempt,
                                reason)
                    return False
                log.warning("MLflow: %s failed (attempt %d/%d: %s); retrying in %.1fs", what,
                            attempt, self.attempts, reason, delay)
                time.sleep(delay)
                delay *= 2
        return False
