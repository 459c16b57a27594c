"""``pipeline doctor``: is this machine able to run every stage? One row per check."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipeline.config import Config


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def _python() -> str:
    if sys.version_info[:2] != (3, 11):
        raise RuntimeError(f"Python {sys.version.split()[0]}; TensorFlow 2.15 needs 3.11")
    return sys.version.split()[0]


def _java() -> str:
    from pipeline.spark import check_java

    java = check_java()
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    first = (out.stderr or out.stdout).strip().splitlines()[0]
    major = re.search(r'version "(\d+)', first)
    if not major or int(major.group(1)) < 17:
        raise RuntimeError(f"{first}; Spark 4 needs Java 17 or newer")
    return first


def _spark(cfg: Config) -> Callable[[], str]:
    def check() -> str:
        from pipeline.spark import get_spark

        started = time.monotonic()
        spark = get_spark(cfg.spark, app_name="pipeline-doctor")
        total = spark.range(1000).selectExpr("sum(id)").first()[0]
        if total != 499500:
            raise RuntimeError(f"Spark computed {total} for sum(0..999)")
        version = spark.version
        return f"Spark {version} on {cfg.spark.master}, up in {time.monotonic() - started:.1f}s"
    return check


def _horovod() -> str:
    from pipeline.train.launcher import horovod_build_report, horovod_version

    tensorflow, gloo, _ = horovod_build_report()
    missing = [name for name, built in (("TensorFlow", tensorflow), ("Gloo", gloo)) if not built]
    if missing:
        raise RuntimeError(f"Horovod was built without {' and '.join(missing)}; rebuild with "
                           "'make venv' (HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1)")
    return f"Horovod {horovod_version()}: TensorFlow and Gloo built"


def _mlflow(cfg: Config) -> Callable[[], str]:
    def check() -> str:
        from pipeline.tracking.params import library_versions
        from pipeline.tracking.tracker import Tracker

        tracker = Tracker.from_config(cfg.mlflow)
        tracker.experiment_id  # noqa: B018 - raises when the store is unusable
        return f"MLflow {library_versions()['mlflow']} at {tracker.uri}"
    return check


CHECKS = ("python", "java", "spark", "horovod", "mlflow")


def run_checks(cfg: Config, only: Sequence[str] = CHECKS) -> list[CheckResult]:
    """The checks named in ``only`` (all by default), in the table's order: one failing
    check never stops the others."""
    checks: dict[str, Callable[[], str]] = {
        "python": _python, "java": _java, "spark": _spark(cfg), "horovod": _horovod,
        "mlflow": _mlflow(cfg),
    }
    results = []
    for name, check in ((name, checks[name]) for name in CHECKS if name in only):
        try:
            results.append(CheckResult(name, True, check()))
        except Exception as exc:  # every failure becomes a row of the table
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            results.append(CheckResult(name, False, message))
    return results


def format_table(results: list[CheckResult]) -> str:
    width = max(len(r.name) for r in results)
    lines = [f"{'check'.ljust(width)}  status  detail", f"{'-' * width}  ------  ------"]
    lines += [f"{r.name.ljust(width)}  {'ok' if r.ok else 'FAIL':6}  {r.detail}" for r in results]
    return "\n".join(lines)
