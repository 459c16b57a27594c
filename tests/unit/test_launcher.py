"""Reading Horovod's failure report: the error names the rank and how it ended."""

import os
import stat
from pathlib import Path

from pipeline.config import load_config
from pipeline.train.launcher import (
    GlooLauncher,
    SparkLauncher,
    TrainingFailedError,
    WorkerFailure,
    environment,
    make_launcher,
    parse_failure,
    secret_environment,
    secret_handoff,
    with_environment,
    worker_env,
)

HOROVOD_REPORT = ("Horovod detected that one or more processes exited with non-zero status, "
                  "thus causing the job to be terminated. The first process to do so was:\n"
                  "Process name: {name}\nExit code: {code}\n")


def test_killed_rank_is_named_with_its_signal():
    failure = parse_failure(HOROVOD_REPORT.format(name="1", code=137))
    assert failure == WorkerFailure(rank="1", exit_code=137, signal="SIGKILL")
    assert failure.message == ("worker rank 1 was killed by SIGKILL; Horovod stopped the other "
                               "workers")
    assert str(TrainingFailedError(failure)).endswith(failure.message)


def test_hosts_style_names_and_plain_exit_codes():
    failure = parse_failure(HOROVOD_REPORT.format(name="node2[3]", code=1))
    assert (failure.rank, failure.exit_code, failure.signal) == ("3", 1, None)
    assert failure.message.startswith("worker rank 3 failed first (exit 1;")
    assert parse_failure(HOROVOD_REPORT.format(name="0", code=-15)).signal == "SIGTERM"


def test_other_errors_keep_their_last_line():
    failure = parse_failure("Traceback...\nTimed out waiting for 2 tasks")
    assert failure.rank is None and failure.message == "Timed out waiting for 2 tasks"


def test_stall_shutdown_follows_the_configured_timeout():
    env = worker_env(load_config(overrides=["launch.stall_timeout_s=40"]).launch)
    assert env["HOROVOD_STALL_SHUTDOWN_TIME_SECONDS"] == "40"
    assert int(env["HOROVOD_STALL_CHECK_TIME_SECONDS"]) < 40


def test_each_launcher_setting_gets_its_implementation():
    assert isinstance(make_launcher(load_config()), GlooLauncher)
    assert make_launcher(load_config()).hosts(2) == "localhost:2"
    hosts = make_launcher(load_config(overrides=["launch.launcher=hosts",
                                                 "launch.hosts=a:1,b:1"]))
    assert hosts.hosts(2) == "a:1,b:1"
    assert isinstance(make_launcher(load_config(overrides=["launch.launcher=spark"])),
                      SparkLauncher)


def test_environment_is_restored_after_the_launch():
    os.environ.pop("PIPELINE_TEST_KEY", None)
    with environment({"PIPELINE_TEST_KEY": "1"}):
        assert os.environ["PIPELINE_TEST_KEY"] == "1"
    assert "PIPELINE_TEST_KEY" not in os.environ


def test_the_hosts_launcher_hands_the_ssh_settings_to_horovod(monkeypatch):
    import horovod

    calls = []
    monkeypatch.setattr(horovod, "run", lambda fn, **kwargs: calls.append(kwargs) or ["ok"])
    cfg = load_config(overrides=["launch.launcher=hosts", "launch.hosts=a:1,b:1",
                                 "launch.ssh_port=2222", "launch.ssh_identity_file=/k/id"])
    assert make_launcher(cfg).run(print, (), 2) == ["ok"]
    assert (calls[0]["hosts"], calls[0]["ssh_port"], calls[0]["ssh_identity_file"]) == \
        ("a:1,b:1", 2222, "/k/id")
    make_launcher(load_config()).run(print, (), 2)  # defaults: ssh's own
    assert (calls[1]["ssh_port"], calls[1]["ssh_identity_file"]) == (None, None)


def test_elastic_mode_hands_horovod_its_hosts_bounds_and_cooldown(monkeypatch, caplog):
    """``launch.elastic`` (also under its expected name ``train.elastic``): hosts from the
    discovery script or the fixed list, between min_workers and train.workers processes."""
    import horovod

    calls = []
    monkeypatch.setattr(horovod, "run", lambda fn, **kwargs: calls.append(kwargs) or ["ok"])
    fixed = load_config(overrides=["train.elastic=true", "launch.launcher=hosts",
                                   "launch.hosts=a:1,b:1", "launch.host_cooldown_s=5"])
    assert "'train.elastic' is now 'launch.elastic'" in caplog.text
    found = load_config(overrides=["launch.elastic=true", "launch.launcher=hosts",
                                   "launch.discovery_script=/bin/true", "launch.min_workers=2",
                                   "train.workers=4"])
    make_launcher(fixed).run(print, (), 2)
    make_launcher(found).run(print, (), 4)
    assert {k: calls[0][k] for k in ("hosts", "host_discovery_script", "min_num_proc",
                                     "max_num_proc", "cooldown_range")} == \
        {"hosts": "a:1,b:1", "host_discovery_script": None, "min_num_proc": 1,
         "max_num_proc": 2, "cooldown_range": (5, 3600)}
    assert (calls[1]["hosts"], calls[1]["host_discovery_script"], calls[1]["min_num_proc"],
            calls[1]["max_num_proc"]) == (None, "/bin/true", 2, 4)
    make_launcher(load_config()).run(print, (), 2)  # fail fast: no elastic argument
    assert "min_num_proc" not in calls[2]


def test_secrets_go_to_local_workers_in_a_file_only_this_user_reads(monkeypatch):
    monkeypatch.setenv("PIPELINE_TEST_SECRET_KEY", "s3cr3t")
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent")  # a path ssh needs, no secret
    secrets = secret_environment()
    assert secrets["PIPELINE_TEST_SECRET_KEY"] == "s3cr3t" and "SSH_AUTH_SOCK" not in secrets
    with secret_handoff(secrets, local=True) as handoff:
        path = Path(handoff)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        monkeypatch.delenv("PIPELINE_TEST_SECRET_KEY")
        assert with_environment(handoff, os.getenv, "PIPELINE_TEST_SECRET_KEY") == "s3cr3t"
    assert not path.parent.exists()  # removed with the ranks
    with secret_handoff(secrets, local=False) as handoff:  # other hosts: the values themselves
        assert handoff == secrets


WORKER = """
import atexit, pathlib, sys
atexit.register(pathlib.Path(sys.argv[1]).write_text, "torn down")  # stands for Horovod's
from pipeline.train.launcher import worker_main
print(worker_main({{}}, len, "rank"), flush=True)
{after}
"""


def _worker_exit(tmp_path: Path, after: str = "") -> tuple[int, str, bool]:
    """A process that runs a worker function through ``worker_main``, then ``after``:
    (exit status, stdout, whether the teardown registered before it ran)."""
    import subprocess
    import sys

    marker = tmp_path / "teardown"
    done = subprocess.run([sys.executable, "-c", WORKER.format(after=after), str(marker)],
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, marker.exists()


def test_a_worker_ends_without_teardown_once_its_result_is_returned(tmp_path):
    assert _worker_exit(tmp_path) == (0, "4\n", False)


def test_a_worker_failing_after_its_function_keeps_its_failure_status(tmp_path):
    code, out, _ = _worker_exit(tmp_path, "raise RuntimeError('sending the result failed')")
    assert (code, out) == (1, "4\n")
