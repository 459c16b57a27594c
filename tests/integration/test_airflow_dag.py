"""The Airflow DAG ``pipeline_retrain`` (deploy/airflow/) in a real Airflow, in its own venv.

Set-up: deploy/airflow/setup_airflow.sh (idempotent; about 25 s the first time, instant after;
started in the background when these tests are collected, so a fresh clone's downloads overlap
the tests before them),
a scratch AIRFLOW_HOME with SQLite, ``airflow db migrate``. Then: the DAG imports cleanly with the
promised settings; the exit-code contract of ``pipeline retrain`` maps to task states (a stand-in
``pipeline`` that exits 0/75/1); and ``airflow dags test`` runs the real retrain twice on a small
set of real digits: the first run builds a dataset version and registers a model, the second
finds nothing new and builds nothing. That run keeps its raw files, dataset versions and model
artifacts on ``s3://`` (a real S3 API), as production does.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline import storage
from tests.conftest import REPO, airflow_setup, fresh_store
from tests.integration.test_s3_pipeline import _upload

# the first test sets up Airflow's venv; the last runs two real retrains under Airflow
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

DAG_ID = "pipeline_retrain"
AIRFLOW_VENV = REPO / ".venv-airflow"
AIRFLOW = AIRFLOW_VENV / "bin" / "airflow"
PER_LABEL = 30  # 300 real MNIST digits: with 8 rows per group, several groups in every split
DIGITS = 10 * PER_LABEL
FAKE_PIPELINE = """#!/bin/sh
printf '%s\\n' "$(pwd)" "$@" > "$FAKE_RECORD"
exit "$FAKE_RC"
"""


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory, pytestconfig) -> dict[str, str]:
    """The environment of every ``airflow`` call: a scratch AIRFLOW_HOME, migrated."""
    setup = airflow_setup(pytestconfig)  # started in the background at collection
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
    assert AIRFLOW.exists()
    home = tmp_path_factory.mktemp("airflow_home")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "PIPELINE_")) and k != "VIRTUAL_ENV"}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "deploy" / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PIPELINE_RETRAIN_RETRIES": "0",  # a failure is final at once, no 20-minute wait
        "PIPELINE_RETRAIN_TIMEOUT_H": "0.5",
    })
    _airflow(env, "db", "migrate")
    return env


def _airflow(env: dict[str, str], *args: str, check: bool = True,
             timeout: float = 120) -> subprocess.CompletedProcess:
    out = subprocess.run([str(AIRFLOW), *args], env=env, capture_output=True, text=True,
                         timeout=timeout)
    if check:
        assert out.returncode == 0, f"airflow {' '.join(args)}:\n{_tail(out)}"
    return out


def _tail(out: subprocess.CompletedProcess, chars: int = 6000) -> str:
    return (out.stdout + out.stderr)[-chars:]


def _json_output(out: subprocess.CompletedProcess):
    """The JSON document in a ``-o json`` output (warnings may be printed before it)."""
    line = next(line for line in reversed(out.stdout.splitlines()) if line[:1] in "[{")
    return json.loads(line)


def _dags_test(env: dict[str, str], timeout: float = 120) -> tuple[int, str, str, str]:
    """``airflow dags test``: exit status, output, and the states of the run and of its task."""
    out = _airflow(env, "dags", "test", DAG_ID, "2026-11-26", check=False, timeout=timeout)
    with sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db") as db:
        run_id, dag_state = db.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1",
            (DAG_ID,)).fetchone()
        (task_state,) = db.execute(
            "SELECT state FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = ?",
            (DAG_ID, run_id, "retrain")).fetchone()
    return out.returncode, _tail(out), dag_state, task_state


def test_the_dag_imports_cleanly_with_the_promised_settings(airflow_env):
    errors = _airflow(airflow_env, "dags", "list-import-errors", "--local", "-o", "json")
    assert _json_output(errors) == []
    listed = _airflow(airflow_env, "dags", "list", "--local", "-o", "json")
    assert [d["dag_id"] for d in _json_output(listed)] == [DAG_ID]
    # the DAG object as the scheduler sees it, loaded in Airflow's own interpreter
    probe = subprocess.run([str(AIRFLOW_VENV / "bin" / "python"), "-c", """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(sys.argv[1])
dag = bag.get_dag("pipeline_retrain")
task = dag.get_task("retrain")
print(json.dumps({
    "errors": bag.import_errors, "tasks": [t.task_id for t in dag.tasks],
    "schedule": str(dag.schedule), "catchup": dag.catchup,
    "max_active_runs": dag.max_active_runs, "retries": task.retries,
    "retry_delay_s": task.retry_delay.total_seconds(),
    "timeout_s": task.execution_timeout.total_seconds() if task.execution_timeout else None,
    "skip_on_exit_code": list(task.skip_on_exit_code), "operator": type(task).__name__,
}))
""", str(REPO / "deploy" / "airflow")], env={**airflow_env, "PIPELINE_RETRAIN_RETRIES": "2"},
        capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, _tail(probe)
    dag = _json_output(probe)
    assert dag == {
        "errors": {}, "tasks": ["retrain"], "schedule": "@daily", "catchup": False,
        "max_active_runs": 1, "retries": 2, "retry_delay_s": 1200.0, "timeout_s": 1800.0,
        "skip_on_exit_code": [75], "operator": "BashOperator",
    }


@pytest.fixture
def fake_home(tmp_path) -> Path:
    """A stand-in pipeline installation: ``.venv/bin/pipeline`` records its call, exits $FAKE_RC."""
    pipeline = tmp_path / "home" / ".venv" / "bin" / "pipeline"
    pipeline.parent.mkdir(parents=True)
    pipeline.write_text(FAKE_PIPELINE)
    pipeline.chmod(0o755)
    return tmp_path / "home"


@pytest.mark.parametrize(("exit_status", "dag_state", "task_state"), [
    (75, "success", "skipped"),   # another retrain holds the lock: refused, not a failure
    (1, "failed", "failed"),
])
def test_the_exit_status_of_pipeline_retrain_decides_the_task_state(
        airflow_env, fake_home, tmp_path, exit_status, dag_state, task_state):
    record = tmp_path / "record"
    env = {**airflow_env, "PIPELINE_HOME": str(fake_home), "FAKE_RECORD": str(record),
           "FAKE_RC": str(exit_status)}
    status, output, dag, task = _dags_test(env)
    assert (dag, task) == (dag_state, task_state), output
    assert (status == 0) == (dag_state == "success"), output
    assert record.read_text().splitlines() == [str(fake_home), "retrain"]


def test_a_missing_installation_fails_the_task_and_names_pipeline_home(airflow_env, tmp_path):
    env = {**airflow_env, "PIPELINE_HOME": str(tmp_path / "nowhere")}
    status, output, dag, task = _dags_test(env)
    assert (status, dag, task) == (1, "failed", "failed"), output
    assert f"no pipeline installation at {tmp_path / 'nowhere'}" in output
    assert "PIPELINE_HOME" in output


def test_airflow_variables_choose_the_installation_and_the_config(airflow_env, fake_home,
                                                                  tmp_path):
    record, config = tmp_path / "record", tmp_path / "retrain.yaml"
    # AIRFLOW_VAR_X is Airflow's Variable X (the same lookup as `airflow variables set`, without
    # a CLI call per variable); the Variables win over the worker's PIPELINE_X
    env = {**airflow_env, "AIRFLOW_VAR_PIPELINE_HOME": str(fake_home),
           "AIRFLOW_VAR_PIPELINE_CONFIG": str(config),
           "PIPELINE_HOME": str(tmp_path / "nowhere"), "PIPELINE_CONFIG": str(tmp_path / "no.yaml"),
           "FAKE_RECORD": str(record), "FAKE_RC": "0"}
    status, output, dag, task = _dags_test(env)
    assert (status, dag, task) == (0, "success", "success"), output
    assert record.read_text().splitlines() == [str(fake_home), "retrain", "--config", str(config)]


def _retrain_config(tmp: Path, root: str) -> Path:
    """The embedded defaults with the raw input, the dataset versions, the checkpoints and the
    MLflow artifacts under the bucket ``root``, the lock and the tracking store under ``tmp``."""
    config = tmp / "retrain.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp / "data"),
        "spark": {"master": "local[2]"},
        "dataset": {"rows_per_row_group": 8},
        "train": {"epochs": 1, "checkpoint_dir": f"{root}/checkpoints"},
        "launch": {"reader_workers": 1},
        "mlflow": {"tracking_uri": fresh_store(tmp), "artifact_root": f"{root}/mlartifacts"},
        "retrain": {"kind": "images", "input": f"{root}/raw", "output": f"{root}/versions",
                    "lock_dir": str(tmp / "lock")},
    }))
    return config


def _model_versions(tracking_uri: str) -> list[tuple[str, str]]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    return sorted((v.name, v.version) for v in client.search_model_versions())


def _manifests(s3) -> list[str]:
    return [k for k in s3.keys("airflow", "versions/") if k.endswith("/manifest.json")]


def test_the_dag_runs_the_real_retrain_on_s3_and_a_second_run_finds_nothing_new(
        airflow_env, s3, digits_raw, tmp_path):
    """As production runs it: Airflow starts ``pipeline retrain`` on raw files in object
    storage (a real S3 API, reached through the AWS environment alone), versions and model
    artifacts written there, the lock on local disk as the README says."""
    from mlflow import MlflowClient

    root = s3.bucket("airflow")
    assert _upload(s3, digits_raw, "airflow", "raw", PER_LABEL) == DIGITS
    config = _retrain_config(tmp_path, root)
    tracking_uri = yaml.safe_load(config.read_text())["mlflow"]["tracking_uri"]
    # PIPELINE_HOME unset: the DAG runs the pipeline of the repository it lives in
    env = {**airflow_env, **s3.env, "PIPELINE_CONFIG": str(config)}

    status, log, dag, task = _dags_test(env, timeout=900)
    assert (status, dag, task) == (0, "success", "success"), log
    assert _manifests(s3) == ["versions/v0001/manifest.json"], log
    assert "versions/v0001/inputs.json" in s3.keys("airflow", "versions/v0001/")
    manifest = json.loads(storage.read_text(f"{root}/versions/v0001/manifest.json"))
    assert manifest["discovered"] == DIGITS
    assert sum(split["rows"] for split in manifest["splits"].values()) == DIGITS
    registered = _model_versions(tracking_uri)
    assert len(registered) == 1, registered
    name, version = registered[0]
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    assert client.get_model_version_by_alias(name, "champion").version == version
    assert any(k.endswith("MLmodel") for k in s3.keys("airflow", "mlartifacts/"))

    status, log, dag, task = _dags_test(env, timeout=900)
    assert (status, dag, task) == (0, "success", "success"), log
    assert "no new data" in log
    assert _manifests(s3) == ["versions/v0001/manifest.json"]
    assert _model_versions(tracking_uri) == registered
