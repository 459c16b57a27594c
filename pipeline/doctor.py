"""``pipeline doctor``: is this machine able to run every stage? One row per check."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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


def _horovod() -> str:
    tensorflow, gloo, _ = horovod_build_report()
    missing = [name for name, built in (("TensorFlow", tensorflow), ("Gloo", gloo)) if not built]
    if missing:
        raise RuntimeError(f"Horovod was built without {' and '.join(missing)}; rebuild with "
                           "'make venv' (HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1)")
    import horovod

    return f"Horovod {horovod.__version__}: TensorFlow and Gloo built"


def _mlflow(cfg: Config) -> Callable[[], str]:
    def check() -> str:
        import mlflow

        from pipeline.tracking.store import absolute_tracking_uri, check_store

        check_store(cfg.mlflow)
        return f"MLflow {mlflow.__version__} at {absolute_tracking_uri(cfg.mlflow.tracking_uri)}"
    return check


def run_checks(cfg: Config) -> list[CheckResult]:
    checks: list[tuple[str, Callable[[], str]]] = [
        ("python", _python), ("java", _java), ("spark", _spark(cfg)),
        ("horovod", _horovod), ("mlflow", _mlflow(cfg)),
    ]
    results = []
    for name, check in checks:
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
