"""Reading Horovod's failure report: the error names the rank and how it ended."""

from pipeline.config import load_config
from pipeline.train.launcher import describe_failure, worker_env

HOROVOD_REPORT = ("Horovod detected that one or more processes exited with non-zero status, "
                  "thus causing the job to be terminated. The first process to do so was:\n"
                  "Process name: {name}\nExit code: {code}\n")


def test_killed_rank_is_named_with_its_signal():
    text = describe_failure(HOROVOD_REPORT.format(name="1", code=137))
    assert text == "worker rank 1 was killed by SIGKILL; Horovod stopped the other workers"


def test_hosts_style_names_and_plain_exit_codes():
    assert describe_failure(HOROVOD_REPORT.format(name="node2[3]", code=1)).startswith(
        "worker rank 3 failed first (exit 1;")
    assert "killed by SIGTERM" in describe_failure(HOROVOD_REPORT.format(name="0", code=-15))


def test_other_errors_keep_their_last_line():
    assert describe_failure("Traceback...\nTimed out waiting for 2 tasks") == (
        "Timed out waiting for 2 tasks")


def test_stall_shutdown_follows_the_configured_timeout():
    env = worker_env(load_config(overrides=["train.stall_timeout_s=40"]).train)
    assert env["HOROVOD_STALL_SHUTDOWN_TIME_SECONDS"] == "40"
    assert int(env["HOROVOD_STALL_CHECK_TIME_SECONDS"]) < 40
