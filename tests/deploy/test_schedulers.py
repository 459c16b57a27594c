"""The scheduler recipes for ``pipeline retrain`` (deploy/kubernetes, deploy/cron, deploy/systemd)
agree with each other, with the container image and with the command's exit-status contract.
No cluster, cron daemon or systemd instance runs here: the files are parsed, the shell snippets
are run against a stand-in ``pipeline``, and ``systemd-analyze verify`` checks the units."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from pipeline.cli import EXIT_LOCKED, EXIT_USAGE
from pipeline.config import load_config
from tests.dockerfile import parse

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CRONJOB = DEPLOY / "kubernetes" / "retrain-cronjob.yaml"
CRONTAB = DEPLOY / "cron" / "pipeline-retrain.crontab"
SERVICE = DEPLOY / "systemd" / "pipeline-retrain.service"
TIMER = DEPLOY / "systemd" / "pipeline-retrain.timer"

# a stand-in for the pipeline command: records its working directory and arguments, exits $FAKE_RC
FAKE_PIPELINE = """#!/bin/sh
printf '%s\\n' "$(pwd)" "$@" > "$FAKE_RECORD"
exit "${FAKE_RC:-0}"
"""

# --- cron expressions ------------------------------------------------------------------------

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_FIELDS = [  # name, low, high, names
    ("minute", 0, 59, []),
    ("hour", 0, 23, []),
    ("day of month", 1, 31, []),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
]


def cron_errors(expression: str) -> list[str]:
    """What is wrong with a 5-field cron expression (empty when it is valid)."""
    fields = expression.split()
    if len(fields) != 5:
        return [f"{len(fields)} fields, not 5: {expression!r}"]
    errors = []
    for text, (name, low, high, names) in zip(fields, _FIELDS, strict=True):
        def value(token: str, low=low, names=names) -> int:
            if token.lower() in names:
                return names.index(token.lower()) + (1 if low == 1 else 0)
            if not token.isdigit():
                raise ValueError(token)
            return int(token)

        for item in text.split(","):
            base, _, step = item.partition("/")
            try:
                if step and (not step.isdigit() or int(step) == 0):
                    raise ValueError(step)
                if base != "*":
                    first, _, last = base.partition("-")
                    numbers = [value(first)] + ([value(last)] if last else [])
                    if not all(low <= n <= high for n in numbers) or numbers != sorted(numbers):
                        raise ValueError(base)
            except ValueError:
                errors.append(f"{name} field {text!r} is not valid (range {low}-{high})")
    return errors


@pytest.mark.parametrize("expression", ["17 3 * * *", "*/15 0-6 1,15 jan-mar mon-fri",
                                        "0 0 * * 7", "5 4 * * sun"])
def test_cron_check_accepts_valid_expressions(expression):
    assert cron_errors(expression) == []


@pytest.mark.parametrize("expression", ["17 3 * *", "60 3 * * *", "0 24 * * *", "0 0 0 * *",
                                        "0 0 * 13 *", "*/0 * * * *", "0 0 * * 8", "@daily",
                                        "5-1 * * * *", "x * * * *"])
def test_cron_check_rejects_invalid_expressions(expression):
    assert cron_errors(expression)


# --- Kubernetes ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def manifests() -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all(CRONJOB.read_text()) if d]
    by_kind = {}
    for doc in docs:
        assert doc["kind"] not in by_kind, f"two {doc['kind']} in {CRONJOB.name}"
        by_kind[doc["kind"]] = doc
    return by_kind


def _pod(manifests) -> dict:
    return manifests["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def _container(manifests) -> dict:
    (container,) = _pod(manifests)["containers"]
    return container


def _script(manifests) -> str:
    container = _container(manifests)
    # no command: the image's entrypoint (Spark's) passes these arguments through
    assert "command" not in container
    shell, option, script = container["args"]
    assert [shell, option] == ["/bin/sh", "-c"]
    return script


def _image_tag(dockerfile: str) -> str:
    """The name:tag of ``docker build -f deploy/docker/DOCKERFILE -t NAME:TAG`` in its header."""
    text = (DEPLOY / "docker" / dockerfile).read_text()
    return re.search(rf"docker build -f deploy/docker/{dockerfile} -t (\S+) ", text).group(1)


def test_every_document_is_a_known_kind_in_the_pipeline_namespace(manifests):
    assert set(manifests) == {"ServiceAccount", "Role", "RoleBinding", "PersistentVolumeClaim",
                              "ConfigMap", "CronJob"}
    for doc in manifests.values():
        assert doc["metadata"]["namespace"] == "pipeline", doc["kind"]
        assert doc["apiVersion"] in ("v1", "batch/v1", "rbac.authorization.k8s.io/v1")


def test_the_cronjob_schedules_one_retrain_at_a_time(manifests):
    spec = manifests["CronJob"]["spec"]
    assert cron_errors(spec["schedule"]) == []
    assert spec["concurrencyPolicy"] == "Forbid"
    assert isinstance(spec["startingDeadlineSeconds"], int) and spec["startingDeadlineSeconds"] > 0
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    job = spec["jobTemplate"]["spec"]
    assert isinstance(job["backoffLimit"], int) and 0 <= job["backoffLimit"] <= 5
    assert job["activeDeadlineSeconds"] > 0
    pod = _pod(manifests)
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    if "podFailurePolicy" in job:  # Kubernetes accepts it only with restartPolicy Never
        assert pod["restartPolicy"] == "Never"
        names = {c["name"] for c in pod["containers"]}
        for rule in job["podFailurePolicy"]["rules"]:
            if "onExitCodes" in rule:
                assert rule["onExitCodes"]["containerName"] in names
                # a lock held elsewhere must never fail the Job (the script maps it to 0)
                assert EXIT_LOCKED not in rule["onExitCodes"]["values"]
        fail_at_once = [r for r in job["podFailurePolicy"]["rules"] if r["action"] == "FailJob"]
        assert [r["onExitCodes"]["values"] for r in fail_at_once] == [[EXIT_USAGE]]


def test_the_container_runs_pipeline_retrain_with_the_mounted_config(manifests):
    script = _script(manifests)
    command = shlex.split(script.split("&")[0].replace("\\\n", " "))
    assert command[:4] == ["pipeline", "retrain", "--config", "/etc/pipeline/kubernetes.yaml"]
    assert all("=" in arg for arg in command[4:])  # only key=value overrides follow
    container, pod = _container(manifests), _pod(manifests)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_volume = volumes[mounts["/etc/pipeline"]]
    assert config_volume["configMap"]["name"] == manifests["ConfigMap"]["metadata"]["name"]
    assert "kubernetes.yaml" in manifests["ConfigMap"]["data"]
    lock_volume = volumes[mounts[_configmap_config(manifests)["retrain"]["lock_dir"]]]
    claim = manifests["PersistentVolumeClaim"]
    assert lock_volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # every retrain pod, any node


def test_the_container_image_is_the_cpu_image_with_its_layout():
    # the image's commands run in its WORKDIR, with `pipeline` on its PATH (the rest of its
    # layout: tests/deploy/test_images.py)
    image = parse((DEPLOY / "docker" / "Dockerfile.cpu").read_text())[-1]
    workdir = image.workdir
    assert image.env["PATH"].startswith("/opt/pipeline/.venv/bin:")
    docs = {d["kind"]: d for d in yaml.safe_load_all(CRONJOB.read_text()) if d}
    container = _container(docs)
    tag = _image_tag("Dockerfile.cpu")
    assert container["image"] == tag or container["image"].endswith("/" + tag)
    assert container["workingDir"] == workdir
    assert container["imagePullPolicy"] == "Always"  # the tag is moved by every build
    executor_image = _configmap_config(docs)["spark"]["conf"][
        "spark.kubernetes.executor.container.image"]
    assert executor_image.endswith("/" + _image_tag("Dockerfile.gpu"))
    assert executor_image.rsplit("/", 1)[0] == container["image"].rsplit("/", 1)[0]  # same registry


def _configmap_config(manifests) -> dict:
    return yaml.safe_load(manifests["ConfigMap"]["data"]["kubernetes.yaml"])


def _leaves(data: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "conf":
            out.update(_leaves(value, f"{prefix}{key}."))
        elif isinstance(value, dict):  # spark.conf keys hold dots themselves
            out.update({f"{prefix}{key}.{k}": v for k, v in value.items()})
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_the_configmap_is_conf_kubernetes_yaml_plus_the_retrain_settings(manifests, tmp_path):
    config = _configmap_config(manifests)
    base = _leaves(yaml.safe_load((REPO / "conf" / "kubernetes.yaml").read_text()))
    ours = _leaves(config)
    differing = {k for k, v in base.items() if ours.get(k, "<missing>") != v}
    assert differing == {"spark.master"}  # the API server as seen from inside the cluster
    assert ours["spark.master"] == "k8s://https://kubernetes.default.svc:443"
    # a valid configuration for the pipeline, with the overrides the pod adds
    path = tmp_path / "kubernetes.yaml"
    path.write_text(manifests["ConfigMap"]["data"]["kubernetes.yaml"])
    overrides = shlex.split(_script(manifests).split("&")[0].replace("\\\n", " "))[4:]
    env = {"POD_IP": "10.1.2.3", "POD_NAME": "pipeline-retrain-123-abc"}
    overrides = [re.sub(r"\$(\w+)", lambda m: env[m.group(1)], o) for o in overrides]
    cfg = load_config(path, overrides)
    assert re.match(r"s3a?://", cfg.retrain.input) and cfg.retrain.output.startswith("s3://")
    assert cfg.retrain.lock_dir.startswith("/")  # never the object store
    assert cfg.spark.conf["spark.driver.host"] == "10.1.2.3"
    assert cfg.spark.conf["spark.kubernetes.driver.pod.name"] == env["POD_NAME"]
    secret_words = re.compile(r"secret|token|password|access_key", re.I)
    assert not [k for k in ours if secret_words.search(k.rsplit(".", 1)[-1])]


def test_the_driver_service_account_may_run_executors(manifests):
    account = manifests["ServiceAccount"]["metadata"]["name"]
    assert _pod(manifests)["serviceAccountName"] == account
    binding = manifests["RoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account,
                                    "namespace": "pipeline"}]
    assert binding["roleRef"]["name"] == manifests["Role"]["metadata"]["name"]
    rules = manifests["Role"]["rules"]
    allowed = {(r, v) for rule in rules for r in rule["resources"] for v in rule["verbs"]}
    for need in [("pods", "create"), ("pods", "delete"), ("pods", "watch"), ("services", "create"),
                 ("configmaps", "create")]:
        assert need in allowed, need
    conf = _configmap_config(manifests)["spark"]["conf"]
    assert conf["spark.kubernetes.namespace"] == "pipeline"
    assert conf["spark.kubernetes.authenticate.driver.serviceAccountName"] == account


def test_mlflow_credentials_come_from_a_secret(manifests):
    container = _container(manifests)
    secrets = {s["secretRef"]["name"]: s["secretRef"].get("optional", False)
               for s in container["envFrom"]}
    assert secrets.get("pipeline-mlflow") is False  # required: no tracking without it
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert not [e for e in env.values() if "value" in e and re.search(r"(?i)password|token",
                                                                       e["name"])]


def _fake_bin(tmp_path: Path, body: str = FAKE_PIPELINE) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "pipeline").write_text(body)
    (bin_dir / "pipeline").chmod(0o755)
    return bin_dir


@pytest.mark.parametrize(("exit_status", "reported"), [(0, 0), (EXIT_LOCKED, 0), (1, 1),
                                                        (EXIT_USAGE, EXIT_USAGE)])
def test_the_container_script_reports_a_held_lock_as_success(manifests, tmp_path, exit_status,
                                                              reported):
    record = tmp_path / "record"
    env = {"PATH": f"{_fake_bin(tmp_path)}:/usr/bin:/bin", "FAKE_RECORD": str(record),
           "FAKE_RC": str(exit_status), "POD_IP": "10.1.2.3", "POD_NAME": "retrain-pod"}
    out = subprocess.run(["/bin/sh", "-c", _script(manifests)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == reported, out.stdout + out.stderr
    assert record.read_text().splitlines()[1:] == [
        "retrain", "--config", "/etc/pipeline/kubernetes.yaml",
        "spark.conf.spark.driver.host=10.1.2.3",
        "spark.conf.spark.kubernetes.driver.pod.name=retrain-pod"]
    assert ("another retrain holds the lock" in out.stdout) == (exit_status == EXIT_LOCKED)


def test_the_container_script_forwards_sigterm_to_the_retrain(manifests, tmp_path):
    record = tmp_path / "record"
    body = ("#!/bin/sh\ntrap 'echo TERM >> \"$FAKE_RECORD\"; exit 143' TERM\n"
            "echo started > \"$FAKE_RECORD\"\nwhile :; do sleep 0.05; done\n")
    env = {"PATH": f"{_fake_bin(tmp_path, body)}:/usr/bin:/bin", "FAKE_RECORD": str(record),
           "POD_IP": "10.1.2.3", "POD_NAME": "retrain-pod"}
    shell = subprocess.Popen(["/bin/sh", "-c", _script(manifests)], env=env, cwd=tmp_path,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not (record.exists() and "started" in record.read_text()):
            assert time.monotonic() < deadline, "the stand-in pipeline did not start"
            time.sleep(0.05)
        shell.send_signal(signal.SIGTERM)  # what the kubelet sends to PID 1
        assert shell.wait(timeout=20) == 143
        assert record.read_text().splitlines() == ["started", "TERM"]
    finally:  # the shell's session: the stand-in too, should the shell have left it behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
        shell.wait(timeout=20)


# --- cron ------------------------------------------------------------------------------------

def _crontab() -> tuple[dict[str, str], str, str]:
    """(environment assignments, schedule, command) of the crontab's single job."""
    env, jobs = {}, []
    for line in CRONTAB.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.match(r"([A-Za-z_]\w*)\s*=\s*(.*)$", line)
        if match and not re.match(r"\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+\S", line.split("=")[0]):
            env[match.group(1)] = match.group(2).strip().strip('"')
        else:
            jobs.append(line)
    assert len(jobs) == 1, jobs
    fields = jobs[0].split(None, 5)
    return env, " ".join(fields[:5]), fields[5]


def _cron_shell_command(command: str) -> str:
    """What cron hands to the shell: an unescaped % would end the command (the rest is stdin)."""
    assert not re.search(r"(?<!\\)%", command), "unescaped % in the crontab command"
    return command.replace("\\%", "%")


def test_the_crontab_runs_pipeline_retrain_daily_with_logs_and_a_path():
    env, schedule, command = _crontab()
    assert cron_errors(schedule) == []
    assert env["SHELL"] == "/bin/bash"
    home = env["PIPELINE_HOME"]
    assert env["PATH"].split(":")[0] == f"{home}/.venv/bin"  # `pipeline` is the project's
    assert "$" not in env["PATH"]  # cron does not expand variables in assignments
    assert "pipeline retrain" in command and "flock" not in command  # retrain locks itself
    assert ">>" in command and "2>&1" in command
    subprocess.run(["bash", "-n", "-c", _cron_shell_command(command)], check=True)


@pytest.mark.parametrize(("exit_status", "complains"), [(0, False), (EXIT_LOCKED, False),
                                                        (1, True)])
def test_the_crontab_command_logs_every_run_and_reports_only_failures(tmp_path, exit_status,
                                                                     complains):
    env, _, command = _crontab()
    home, record = tmp_path / "home", tmp_path / "record"
    home.mkdir()
    run_env = {**env, "PIPELINE_HOME": str(home),
               "PATH": f"{_fake_bin(tmp_path)}:/usr/bin:/bin",
               "FAKE_RECORD": str(record), "FAKE_RC": str(exit_status)}
    out = subprocess.run([env["SHELL"], "-c", _cron_shell_command(command)], env=run_env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert out.stderr == ""
    # cron mails what the job prints: nothing unless it failed
    assert (f"exit status {exit_status}" in out.stdout) == complains, out.stdout
    assert bool(out.stdout) == complains
    assert record.read_text().splitlines() == [str(home), "retrain", "--config",
                                               env["PIPELINE_CONFIG"]]
    assert len(list((home / "logs").glob("retrain-*.log"))) == 1


# --- systemd ---------------------------------------------------------------------------------

def _unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file: key -> every value it is given (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        assert current is not None, f"{path.name}: {line!r} before any section"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_the_service_is_a_oneshot_pipeline_retrain_where_a_held_lock_is_success():
    service = _unit(SERVICE)["Service"]
    assert service["Type"] == ["oneshot"]
    exec_start = shlex.split(service["ExecStart"][0])
    assert Path(exec_start[0]).name == "pipeline" and exec_start[1] == "retrain"
    home = service["WorkingDirectory"][0]
    assert exec_start[0] == f"{home}/.venv/bin/pipeline"
    success = [code for value in service["SuccessExitStatus"] for code in value.split()]
    assert str(EXIT_LOCKED) in success
    assert service["TimeoutStartSec"] and service["User"]
    assert "Install" not in _unit(SERVICE)  # started by the timer only
    # the same installation and configuration as the crontab
    env, _, _ = _crontab()
    assert home == env["PIPELINE_HOME"]
    assert exec_start[2:] == ["--config", env["PIPELINE_CONFIG"]]


def test_the_timer_starts_the_service_daily_and_catches_up():
    timer = _unit(TIMER)
    assert timer["Timer"]["Unit"] == [SERVICE.name]
    assert timer["Timer"]["Persistent"] == ["true"]
    assert timer["Timer"]["RandomizedDelaySec"]
    assert re.fullmatch(r"\*-\*-\* \d\d:\d\d(:\d\d)?", timer["Timer"]["OnCalendar"][0])
    assert timer["Install"]["WantedBy"] == ["timers.target"]


def test_systemd_analyze_verifies_the_units(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    # the units as installed, with this checkout in place of /opt/pipeline so that ExecStart
    # names an executable that exists here
    home = _unit(SERVICE)["Service"]["WorkingDirectory"][0]
    for unit in (SERVICE, TIMER):
        (tmp_path / unit.name).write_text(unit.read_text().replace(home, str(REPO)))
    assert (REPO / ".venv" / "bin" / "pipeline").exists()
    out = subprocess.run([analyze, "verify", str(tmp_path / SERVICE.name),
                          str(tmp_path / TIMER.name)], capture_output=True, text=True, timeout=60)
    # verify exits 0 on unknown keys and unparsable values, but names them: nothing must be said
    assert (out.returncode, out.stdout + out.stderr) == (0, "")
    calendar = subprocess.run([analyze, "calendar", _unit(TIMER)["Timer"]["OnCalendar"][0]],
                              capture_output=True, text=True, timeout=30)
    assert calendar.returncode == 0, calendar.stderr


def test_every_scheduler_knows_the_lock_held_exit_status():
    assert EXIT_LOCKED == 75
    dag = (DEPLOY / "airflow" / "pipeline_retrain_dag.py").read_text()
    assert re.search(rf"^LOCK_HELD = {EXIT_LOCKED}\b", dag, re.M)
    assert "skip_on_exit_code=LOCK_HELD" in dag
    assert f'"$status" -eq {EXIT_LOCKED}' in CRONJOB.read_text()
    assert f'"$rc" -eq {EXIT_LOCKED}' in CRONTAB.read_text()
