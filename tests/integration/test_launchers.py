"""The same training through each launcher: local processes; hosts, both as two names of this
machine (Horovod starts those ranks without ssh) and over real ssh to 127.0.0.2 and 127.0.0.3
(a test sshd, tests/sshd.py); and Spark tasks on a standalone cluster started by the test, its
workers on 127.0.0.2 and 127.0.0.3 (``pipeline submit``)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import threading
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.config import load_config
from pipeline.train.job import train
from pipeline.train.launcher import make_launcher
from tests.cluster import StandaloneCluster
from tests.conftest import DIGITS_MODEL_SETTINGS, fresh_store, make_config
from tests.procs import run_pipeline
from tests.sshd import LoopbackSshd

SETTINGS = DIGITS_MODEL_SETTINGS  # the local launcher's result is conftest's digits_model
# the launchers differ in where ranks run, not in what they compute: on one machine the
# results agree to float precision; the stated tolerance leaves room for other hardware
TOLERANCE = 0.01


@pytest.fixture(scope="module")
def local_result(digits_model):
    """The local launcher's training with SETTINGS (its registration changes no weight)."""
    return digits_model[1]


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    server = LoopbackSshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


def test_hosts_launcher_places_one_rank_per_host(digits_dataset, local_result, tmp_path):
    cfg = make_config(tmp_path, *SETTINGS, "launch.launcher=hosts",
                      "launch.hosts=localhost:1,127.0.0.1:1")
    result = train(cfg, digits_dataset[0])
    assert result.local_ranks == [0, 0]  # two hosts: each rank is local rank 0 (its GPU slot)
    assert local_result.local_ranks == [0, 1]
    assert result.val_accuracy == pytest.approx(local_result.val_accuracy, abs=TOLERANCE)


def test_hosts_launcher_starts_one_rank_per_host_over_ssh(digits_dataset, local_result, sshd,
                                                          tmp_path, monkeypatch):
    """127.0.0.2 and 127.0.0.3 are no address of an interface here, so Horovod reaches them only
    through ssh, with the port and key of ``launch.ssh_port``/``launch.ssh_identity_file``."""
    monkeypatch.setenv("PATH", f"{sshd.ssh_bin}{os.pathsep}{os.environ['PATH']}")
    hosts = ["127.0.0.2", "127.0.0.3"]
    before = sshd.logins()
    cfg = make_config(tmp_path, *SETTINGS, "launch.launcher=hosts",
                      f"launch.hosts={hosts[0]}:1,{hosts[1]}:1", f"launch.ssh_port={sshd.port}",
                      f"launch.ssh_identity_file={sshd.identity}")
    result = train(cfg, digits_dataset[0])
    assert result.local_ranks == [0, 0]  # one rank on each host
    assert result.val_accuracy == pytest.approx(local_result.val_accuracy, abs=TOLERANCE)
    for host in hosts:
        # the rank itself went through ssh, with the configured port and key ...
        (rank,) = sshd.commands_to(host, "horovod.runner.run_task")
        assert f"-p {sshd.port} " in rank and f"-i {sshd.identity} " in rank
        # ... and sshd let it in on that address
        assert sshd.logins()[host] > before[host], sshd.log.read_text()[-3000:]


SECRET = "pipeline-probe-9f3c1e"  # a value no other command line holds
RUN_TASK = re.compile(r"horovod\.runner\.run_task (\S+) (\d+)")


def _watch_workers(stop: threading.Event, seen: set[str], payloads: list[bytes]) -> None:
    """Every distinct command line of a Horovod worker (or of the shell and ssh that start
    it) until ``stop``, as ``ps`` shows them to any user of the machine; and the function
    Horovod's rendezvous server hands the workers, fetched as any local user could."""
    while not stop.wait(0.02):
        for path in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                line = path.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:  # the process ended
                continue
            if (found := RUN_TASK.search(line)) and line not in seen:
                seen.add(line)
                if not payloads:
                    payloads.append(_fetch_function(*found.groups()))


def _fetch_function(host: str, port: str) -> bytes:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/runfunc/func", timeout=5) as answer:
            return base64.b64decode(answer.read())
    except OSError:  # the server is gone already: nothing to read
        return b""


@pytest.mark.parametrize("over_ssh", [False, True], ids=["local", "ssh"])
def test_secrets_reach_the_workers_but_never_their_command_lines(over_ssh, request,
                                                                 monkeypatch):
    monkeypatch.setenv("PIPELINE_PROBE_TOKEN", SECRET)
    overrides = []
    if over_ssh:
        sshd = request.getfixturevalue("sshd")
        monkeypatch.setenv("PATH", f"{sshd.ssh_bin}{os.pathsep}{os.environ['PATH']}")
        overrides = ["launch.launcher=hosts", "launch.hosts=127.0.0.2:1,127.0.0.3:1",
                     f"launch.ssh_port={sshd.port}", f"launch.ssh_identity_file={sshd.identity}"]
    launcher = make_launcher(load_config(overrides=overrides))
    seen: set[str] = set()
    payloads: list[bytes] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_workers, args=(stop, seen, payloads))
    watcher.start()
    try:
        values = launcher.run(os.getenv, ("PIPELINE_PROBE_TOKEN",), 2)
    finally:
        stop.set()
        watcher.join()
    assert values == [SECRET, SECRET]  # each worker has it in its environment ...
    assert any("HOROVOD_RANK=" in line for line in seen)  # ... the launch lines were seen ...
    assert not [line for line in seen if SECRET in line]  # ... and none holds it
    if not over_ssh:  # on this machine it is in a file only this user reads, not the payload
        assert payloads and payloads[0] and SECRET.encode() not in payloads[0]
    assert os.environ["PIPELINE_PROBE_TOKEN"] == SECRET  # the driver's environment is back


def _copy_few(raw: Path, target: Path, labels: int = 3, per_label: int = 2) -> int:
    for folder in sorted(p for p in raw.iterdir() if p.is_dir())[:labels]:
        (target / folder.name).mkdir(parents=True)
        for image in sorted(folder.iterdir())[:per_label]:
            shutil.copy(image, target / folder.name / image.name)
    return labels * per_label


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a standalone cluster; train, then predict on it
def test_spark_launcher_on_a_standalone_cluster_matches_local(digits_dataset, digits_raw,
                                                              local_result, tmp_path):
    """Trains with ``pipeline submit train``, then predicts with that run's model through
    ``pipeline submit predict`` on the same cluster."""
    stores = [f"mlflow.tracking_uri={fresh_store(tmp_path)}",
              f"mlflow.artifact_root={tmp_path / 'mlartifacts'}"]
    raw = tmp_path / "raw"
    inputs = _copy_few(digits_raw, raw)
    cluster = StandaloneCluster(tmp_path / "cluster")
    try:
        assert cluster.worker_hosts() == ["127.0.0.2", "127.0.0.3"]
        submit = ["submit", "--master", cluster.url, "--executor-memory", "1g",
                  "spark.driver_memory=1g"]
        out = run_pipeline(
            [submit[0], "train", *submit[1:], "--",
             "--data", digits_dataset[0], *SETTINGS, *stores,
             f"train.checkpoint_dir={tmp_path / 'checkpoints'}"], cwd=tmp_path)
        # spark-submit merges the driver's stderr into its stdout
        assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
        assert "launching 2 Horovod workers as Spark tasks" in out.stdout
        assert list((tmp_path / "build" / "submit").glob("pipeline-*.zip"))
        accuracy = float(re.search(r"validation accuracy (\S+)", out.stdout).group(1))
        assert accuracy == pytest.approx(local_result.val_accuracy, abs=TOLERANCE)
        run_id = re.search(r"^run id (\w+)$", out.stdout, re.M).group(1)
        predicted = run_pipeline(
            [submit[0], "predict", *submit[1:], "--", "--model", f"runs:/{run_id}/model",
             "--input", str(raw), "--output", str(tmp_path / "predictions"), *stores],
            cwd=tmp_path, timeout=600)
    finally:
        cluster.stop()
    assert predicted.returncode == 0, (predicted.stdout + predicted.stderr)[-4000:]
    assert f"{inputs} inputs: {inputs} predicted, 0 set aside" in predicted.stdout
    rows = pq.read_table(tmp_path / "predictions").to_pylist()
    assert len(rows) == inputs
    assert {r["true_label"] for r in rows} == {p.name for p in raw.iterdir()}
    assert all(r["predicted_label"] is not None and 0 < r["score"] <= 1 for r in rows)
