"""Start the per-worker function on N Horovod processes: the one place Horovod's runners are used.

``local``: Gloo processes on this machine. ``hosts``: Gloo processes over ssh on ``launch.hosts``.
``spark``: ``horovod.spark.run``, one Spark task per rank on the executors. A worker that dies
ends the job (Horovod stops the others); a worker that stops working is shut down by Horovod's
stall check after ``launch.stall_timeout_s``. Either way the error names the rank. With
``launch.elastic`` (hosts only), Horovod's elastic driver sets a failed host aside instead, and
the others train on.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pipeline.config import Config, LaunchConfig, SparkConfig
from pipeline.errors import PipelineError
from pipeline.redaction import secret_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerFailure:
    """How the first failing rank ended, as far as Horovod reports it."""

    rank: str | None = None
    exit_code: int | None = None
    signal: str | None = None
    detail: str = ""

    @property
    def message(self) -> str:
        if self.signal:
            return (f"worker rank {self.rank} was killed by {self.signal}; Horovod stopped the "
                    "other workers")
        if self.rank is not None:
            return (f"worker rank {self.rank} failed first (exit {self.exit_code}; its output "
                    "above says why, e.g. a peer that stopped responding for "
                    "launch.stall_timeout_s); Horovod stopped the others")
        return self.detail or "unknown error"


class TrainingFailedError(PipelineError, RuntimeError):
    """A Horovod worker failed; ``failure`` says which rank and how it ended."""

    def __init__(self, failure: WorkerFailure) -> None:
        super().__init__(f"Horovod training failed: {failure.message}")
        self.failure = failure


def parse_failure(message: str) -> WorkerFailure:
    """Horovod's 'first process to exit non-zero' report (text is all it gives) -> the rank,
    exit code and signal; any other error keeps its last line."""
    found = re.search(r"Process name: (\S+)\s+Exit code: (-?\d+)", message)
    if not found:
        lines = message.strip().splitlines()
        return WorkerFailure(detail=lines[-1] if lines else "")
    name, code = found.group(1), int(found.group(2))
    rank = name.rsplit("[", 1)[-1].rstrip("]") if "[" in name else name
    number = -code if code < 0 else code - 128 if code > 128 else 0
    try:
        name = signal.Signals(number).name if number else None
    except ValueError:
        name = None
    return WorkerFailure(rank=rank, exit_code=code, signal=name)


def worker_env(cfg: LaunchConfig) -> dict[str, str]:
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
    } | ({"HOROVOD_ELASTIC_TIMEOUT": str(cfg.start_timeout_s)}  # for min_workers to be back
         if cfg.elastic else {})


@contextmanager
def environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """``values`` in ``os.environ`` for the block (``horovod.run`` hands its own environment to
    the workers; a ``None`` value removes the variable), then the previous values back."""
    saved = {key: os.environ.get(key) for key in values}
    _set_environment(values)
    try:
        yield
    finally:
        _set_environment(saved)


def _set_environment(values: Mapping[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def secret_environment() -> dict[str, str]:
    """The variables whose names say they hold a secret (redaction's rule: AWS keys, MLflow
    tokens and passwords, ...), Horovod's own settings and ssh's agent socket (a path the
    driver's ssh needs) aside."""
    return {key: value for key, value in os.environ.items()
            if secret_name(key) and not key.startswith("HOROVOD_") and key != "SSH_AUTH_SOCK"}


@contextmanager
def secret_handoff(secrets: Mapping[str, str], local: bool) -> Iterator[str | dict[str, str]]:
    """How workers get ``secrets`` without a command line: on this machine, the path of a file
    only this user can read, removed after the block; for ranks on other hosts, the values,
    inside Horovod's pickled function (which its rendezvous server hands out over HTTP)."""
    if not local or not secrets:
        yield dict(secrets)
        return
    folder = tempfile.mkdtemp(prefix="pipeline-secrets-")  # mode 0700
    path = os.path.join(folder, "environment.json")
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
        json.dump(dict(secrets), handle)
    try:
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def with_environment(secrets: str | Mapping[str, str], fn: Callable[..., Any], *args: Any) -> Any:
    """Worker side: the ``secret_handoff`` values (or the file holding them) into this
    process's environment, then ``fn(*args)``. Horovod's Gloo launcher would write every
    exported variable into each worker's command line (``env K=V ...``), which ``ps`` shows to
    every user of the machine, over ssh too."""
    if isinstance(secrets, str):
        with open(secrets, encoding="utf-8") as handle:
            secrets = json.load(handle)
    os.environ.update(secrets)
    return fn(*args)


def worker_main(secrets: str | Mapping[str, str], fn: Callable[..., Any], *args: Any) -> Any:
    """What each Gloo worker process runs: ``with_environment``; then, once Horovod has sent
    back what it returned, the process ends without teardown (``_end_without_teardown``).
    Only for a worker process of its own: in any other process it would cut that process's
    exit short."""
    result = with_environment(secrets, fn, *args)
    atexit.register(_end_without_teardown)  # after Horovod's own: runs first
    return result


def _end_without_teardown() -> None:
    """At a worker's exit, once Horovod has sent back what ``fn`` returned: end the process
    now. TensorFlow's and Gloo's teardown cost seconds per worker and per training, for
    nothing. A worker that is exiting on an uncaught exception keeps its failure status."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1 if getattr(sys, "last_value", None) is not None else 0)


@contextmanager
def gloo_build_trusted() -> Iterator[None]:
    """Skip Horovod's per-launch "is Gloo built?" check for the block: it forks a process that
    imports TensorFlow only to ask (5-20 s per training). The install checks the build once
    (``deploy/setup_env.sh``, ``pipeline doctor``: ``horovodrun --check-build``), and a build
    without Gloo still fails, in each worker's ``hvd.init()``, with Horovod's own message."""
    from horovod.runner import launch as horovod_launch

    checked = horovod_launch.gloo_built
    horovod_launch.gloo_built = lambda verbose=False: True
    try:
        yield
    finally:
        horovod_launch.gloo_built = checked


class Launcher(Protocol):
    """Runs ``fn(*args)`` on ``workers`` Horovod ranks and returns their results by rank."""

    def run(self, fn: Callable[..., Any], args: tuple, workers: int) -> list: ...


@dataclass(frozen=True)
class GlooLauncher:
    """Gloo processes started by ``horovod.run``: here (``local``) or over ssh (``hosts``)."""

    cfg: LaunchConfig

    def hosts(self, workers: int) -> str:
        return self.cfg.hosts if self.cfg.launcher == "hosts" else f"localhost:{workers}"

    def elastic_args(self, workers: int) -> dict[str, Any]:
        """``horovod.run``'s elastic arguments (``launch.elastic``): hosts from the discovery
        script or the fixed list, between ``launch.min_workers`` and ``workers`` processes, a
        failed host set aside for ``launch.host_cooldown_s`` and longer on each new failure."""
        cfg = self.cfg
        return {"min_num_proc": cfg.min_workers, "max_num_proc": workers,
                "host_discovery_script": cfg.discovery_script or None,
                "hosts": cfg.hosts or None, "cooldown_range": (cfg.host_cooldown_s, 3600)}

    def run(self, fn: Callable[..., Any], args: tuple, workers: int) -> list:
        import horovod

        cfg = self.cfg
        where = self.elastic_args(workers) if cfg.elastic else {"hosts": self.hosts(workers)}
        log.info("launching %d Horovod workers on %s (Gloo%s)", workers,
                 cfg.discovery_script or where["hosts"], ", elastic" if cfg.elastic else "")
        secrets = secret_environment()  # out of the command lines: see secret_handoff
        with environment({**worker_env(cfg), **dict.fromkeys(secrets)}), \
                secret_handoff(secrets, local=cfg.launcher == "local") as handoff, \
                gloo_build_trusted():
            return horovod.run(worker_main, args=(handoff, fn, *args), num_proc=workers,
                               use_gloo=True, start_timeout=cfg.start_timeout_s, verbose=0,
                               ssh_port=cfg.ssh_port,
                               ssh_identity_file=cfg.ssh_identity_file or None, **where)


@dataclass(frozen=True)
class SparkLauncher:
    """``horovod.spark.run``: one Spark task per rank on the executors of a session it starts."""

    cfg: LaunchConfig
    spark: SparkConfig
    app_name: ClassVar[str] = "pipeline-train"

    def run(self, fn: Callable[..., Any], args: tuple, workers: int) -> list:
        import horovod.spark

        from pipeline.spark import get_spark

        session = get_spark(self.spark, app_name=self.app_name)
        try:
            log.info("launching %d Horovod workers as Spark tasks (Gloo)", workers)
            with gloo_build_trusted():
                return horovod.spark.run(fn, args=args, num_proc=workers,
                                         start_timeout=self.cfg.start_timeout_s, use_gloo=True,
                                         env={**os.environ, **worker_env(self.cfg)}, verbose=0)
        finally:
            session.stop()


def make_launcher(cfg: Config) -> Launcher:
    """The launcher ``launch.launcher`` names."""
    if cfg.launch.launcher == "spark":
        return SparkLauncher(cfg.launch, cfg.spark)
    return GlooLauncher(cfg.launch)


def launch(launcher: Launcher, fn: Callable[..., Any], args: tuple, workers: int) -> list:
    """``launcher.run`` with every failure (Horovod's RuntimeError, a Py4J or Spark error)
    turned into a ``TrainingFailedError`` naming the rank."""
    try:
        return launcher.run(fn, args, workers)
    except Exception as exc:
        raise TrainingFailedError(parse_failure(str(exc))) from None


def horovod_build_report() -> tuple[bool, bool, str]:
    """(TensorFlow built, Gloo built, raw report) from ``horovodrun --check-build``."""
    horovodrun = Path(sys.executable).with_name("horovodrun")
    if not horovodrun.exists():
        raise RuntimeError("horovodrun not found: Horovod is not installed; run 'make venv'")
    out = subprocess.run([str(horovodrun), "--check-build"], capture_output=True, text=True,
                         timeout=120)
    report = out.stdout
    tensorflow = bool(re.search(r"\[X\] TensorFlow", report))
    gloo = bool(re.search(r"Available Controllers:.*?\[X\] Gloo", report, re.S))
    return tensorflow, gloo, report


def horovod_version() -> str:
    import horovod

    return horovod.__version__
