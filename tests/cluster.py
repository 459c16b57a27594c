"""A real Spark standalone cluster on loopback addresses, started and stopped by tests: the master
on 127.0.0.1, each worker (and so its executors) on an address of its own, 127.0.0.2, 127.0.0.3,
..., so that nothing works only because every process binds the same address."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyspark

SPARK_CLASS = Path(pyspark.__file__).parent / "bin" / "spark-class"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_address(index: int) -> str:
    """The loopback address worker ``index`` binds (Linux routes all of 127.0.0.0/8 to lo)."""
    return f"127.0.0.{index + 2}"


class StandaloneCluster:
    """``spark://127.0.0.1:PORT`` with ``workers`` workers of one core each, worker i on
    ``worker_address(i)``."""

    def __init__(self, workdir: Path, workers: int = 2, memory: str = "1500m") -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port, self.ui_port = free_port(), free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self._env = {**os.environ, "SPARK_HOME": str(SPARK_CLASS.parent.parent),
                     "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
        self._master = self._start("master", ["org.apache.spark.deploy.master.Master",
                                              "--host", "127.0.0.1", "--port", str(self.port),
                                              "--webui-port", str(self.ui_port)])
        self.workers = [
            self._start(f"worker{i}", ["org.apache.spark.deploy.worker.Worker", self.url,
                                       "--host", worker_address(i), "--cores", "1",
                                       "--memory", memory, "--webui-port", str(free_port()),
                                       "--work-dir", str(workdir / f"worker{i}")],
                        local_ip=worker_address(i))  # the executors inherit it
            for i in range(workers)]
        self.wait_for_workers(workers)

    def _start(self, name: str, args: list[str], local_ip: str = "127.0.0.1") -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - lives with the process
        return subprocess.Popen([str(SPARK_CLASS), *args], env={**self._env,
                                                                "SPARK_LOCAL_IP": local_ip},
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def worker_hosts(self) -> list[str]:
        """The addresses the master knows its alive workers by."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as r:
            return sorted(w["host"] for w in json.load(r)["workers"] if w["state"] == "ALIVE")

    def alive_workers(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as r:
            return int(json.load(r)["aliveworkers"])

    def wait_for_workers(self, count: int, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.alive_workers() >= count:
                    return
            except OSError:
                pass
            time.sleep(1)
        logs = "\n".join(p.read_text(errors="replace")[-2000:]
                         for p in sorted(self.workdir.glob("*.log")))
        raise RuntimeError(f"Spark standalone cluster did not get {count} workers:\n{logs}")

    def kill_worker(self, index: int) -> None:
        """SIGKILL a worker with its executor and Python workers, as a machine failure would."""
        os.killpg(self.workers[index].pid, signal.SIGKILL)
        self.workers[index].wait(timeout=30)

    def stop(self) -> None:
        for process in [*self.workers, self._master]:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in [*self.workers, self._master]:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
