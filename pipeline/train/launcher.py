"""Start the per-worker function on N Horovod processes: the one place Horovod's runners are used.

``local``: Gloo processes on this machine. ``hosts``: Gloo processes over ssh on ``train.hosts``.
``spark``: ``horovod.spark.run``, one Spark task per rank on the executors. A worker that dies
ends the job (Horovod stops the others); a worker that stops working is shut down by Horovod's
stall check after ``train.stall_timeout_s``. Either way the error names the rank.
"""

from __future__ import annotations

import logging
import os
import re
import signal
from collections.abc import Callable
from typing import Any

from pipeline.config import TrainConfig
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)


class TrainingFailedError(PipelineError, RuntimeError):
    """A Horovod worker failed; the message names the rank and how it ended."""


def worker_env(cfg: TrainConfig) -> dict[str, str]:
    """Environment for every rank: stall detection, timeouts, quiet TensorFlow. Rank 0's MLflow
    requests are bounded well inside the stall timeout (the other ranks wait for it at each
    epoch end), and our own retries come on top."""
    return {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(5, cfg.stall_timeout_s // 8)),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        "HOROVOD_STALL_CHECK_TIME_SECONDS": str(max(1, cfg.stall_timeout_s // 4)),
        "HOROVOD_STALL_SHUTDOWN_TIME_SECONDS": str(cfg.stall_timeout_s),
        "HOROVOD_GLOO_TIMEOUT_SECONDS": str(cfg.stall_timeout_s),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONWARNINGS": "ignore::FutureWarning",
    }


def describe_failure(message: str) -> str:
    """Horovod's 'first process to exit non-zero' report -> 'worker rank 1 was killed by
    SIGKILL; ...' (or 'failed first (exit N; ...)')."""
    found = re.search(r"Process name: (\S+)\s+Exit code: (-?\d+)", message)
    if not found:
        return message.strip().splitlines()[-1] if message.strip() else "unknown error"
    name, code = found.group(1), int(found.group(2))
    rank = name.rsplit("[", 1)[-1].rstrip("]") if "[" in name else name
    number = -code if code < 0 else code - 128 if code > 128 else 0
    try:
        if number:
            return (f"worker rank {rank} was killed by {signal.Signals(number).name}; Horovod "
                    f"stopped the other workers")
    except ValueError:
        pass
    return (f"worker rank {rank} failed first (exit {code}; its output above says why, e.g. a "
            f"peer that stopped responding for train.stall_timeout_s); Horovod stopped the others")


def launch(fn: Callable[..., Any], args: tuple, cfg: TrainConfig) -> list:
    """Run ``fn(*args)`` on ``cfg.workers`` ranks; results by rank. The ``spark`` launcher needs
    an active Spark session."""
    env = worker_env(cfg)
    try:
        if cfg.launcher == "spark":
            import horovod.spark

            log.info("launching %d Horovod workers as Spark tasks (Gloo)", cfg.workers)
            return horovod.spark.run(fn, args=args, num_proc=cfg.workers,
                                     start_timeout=cfg.start_timeout_s, use_gloo=True,
                                     env={**os.environ, **env}, verbose=0)
        import horovod

        hosts = cfg.hosts if cfg.launcher == "hosts" else f"localhost:{cfg.workers}"
        log.info("launching %d Horovod workers on %s (Gloo)", cfg.workers, hosts)
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)  # horovod.run hands its own environment to the workers
        try:
            return horovod.run(fn, args=args, np=cfg.workers, hosts=hosts, use_gloo=True,
                               start_timeout=cfg.start_timeout_s, verbose=0)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    except Exception as exc:  # Horovod raises RuntimeError, Spark a Py4J or Spark error
        raise TrainingFailedError(f"Horovod training failed: {describe_failure(str(exc))}"
                                  ) from None
