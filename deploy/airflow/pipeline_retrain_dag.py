"""Airflow DAG ``pipeline_retrain``: runs ``pipeline retrain`` on a schedule (daily by default).

One task, not one task per step. ``pipeline retrain`` finds the raw inputs that are new since the
last dataset version, builds a new version, trains a challenger, evaluates champion against
challenger and promotes by the rule, all under one MLflow parent run. The command owns the lock
(one retrain per dataset folder, whoever starts it: Airflow, cron, a timer, a person), the
recovery after a crash and that parent run. Split into ingest/train/evaluate/promote tasks, the
DAG would need to pass the dataset version and run ids between tasks through XCom, hold the lock
across task boundaries (and across workers on different hosts), and re-implement the recovery the
command already does; a retried middle task could train on a version another run has superseded.
One task keeps a single source of truth; the per-step detail is in the task log and in MLflow.

The task's exit status follows the command's contract:
  0   done, or nothing new ("no new data")       -> success
  75  another retrain holds the lock, nothing done -> skipped (``skip_on_exit_code``), not failed
  1   failed                                     -> retried, then failed
  2   usage or configuration error               -> failed (retried too: BashOperator cannot tell)
  4   the new data failed validation, nothing trained -> failed: a person reads the report
      (on the retrain's MLflow run); later runs exit 4 too until the raw files change

Configuration, without editing this file:
  PIPELINE_HOME    the pipeline's checkout/installation: the task runs ``$PIPELINE_HOME/.venv/bin/
                   pipeline`` in that folder, so relative paths of the configuration (``./data``,
                   ``sqlite:///mlruns.db``) resolve there. Default: the repository this file lives
                   in (symlink the file into the dags folder, or point ``dags_folder`` here).
  PIPELINE_CONFIG  optional ``--config`` file (YAML merged over conf/default.yaml; relative paths
                   resolve against PIPELINE_HOME). Default: the embedded defaults.
  Both are read when the task runs, first as Airflow Variables (``airflow variables set
  PIPELINE_HOME /srv/pipeline``, or ``AIRFLOW_VAR_PIPELINE_HOME``), then from the worker's
  environment (``PIPELINE_HOME=...``).
  Read from the environment of the DAG processor when the file is parsed:
  PIPELINE_RETRAIN_SCHEDULE   cron expression or preset, default ``@daily``
  PIPELINE_RETRAIN_RETRIES    default 2 (``0`` for tests: a failure is then final at once)
  PIPELINE_RETRAIN_TIMEOUT_H  execution timeout of one attempt in hours, default 6

Retries wait 20 minutes: a retrain killed hard (timeout, lost worker) leaves its lock behind; on
the same host the next attempt takes it over at once (the holder's process is gone), on another
host only once its heartbeat is older than ``retrain.lock_stale_after_s`` (900 s by default).
Retrying earlier would be refused with 75 and skipped, and the day's retrain would be lost.
``max_active_runs=1`` and ``catchup=False``: a retrain always works on everything that is new, so
a missed day needs no backfill, and two runs of this DAG never queue behind the lock.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

DAG_ID = "pipeline_retrain"
LOCK_HELD = 75  # pipeline retrain: another retrain holds the lock, nothing was done
DEFAULT_HOME = str(Path(__file__).resolve().parents[2])  # deploy/airflow/<this file>

SCHEDULE = os.environ.get("PIPELINE_RETRAIN_SCHEDULE", "@daily")
RETRIES = int(os.environ.get("PIPELINE_RETRAIN_RETRIES", "2"))
TIMEOUT = timedelta(hours=float(os.environ.get("PIPELINE_RETRAIN_TIMEOUT_H", "6")))

# Templated by Airflow when the task runs: Variable, else the worker's environment, else default.
RETRAIN_COMMAND = r"""
set -euo pipefail
home="${RETRAIN_VAR_HOME:-${PIPELINE_HOME:-$RETRAIN_DEFAULT_HOME}}"
config="${RETRAIN_VAR_CONFIG:-${PIPELINE_CONFIG:-}}"
pipeline="$home/.venv/bin/pipeline"
if [ ! -x "$pipeline" ]; then
  echo "no pipeline installation at $home ($pipeline is missing): set the Airflow Variable or" \
       "environment variable PIPELINE_HOME to the pipeline's folder (make venv builds .venv)" >&2
  exit 2
fi
cd "$home"
# the pipeline's own environment first: Spark's Python workers and helper tools come from it
export PATH="$home/.venv/bin:$PATH"
unset VIRTUAL_ENV
args=(retrain)
if [ -n "$config" ]; then args+=(--config "$config"); fi
echo "running in $home: $pipeline ${args[*]}"
exec "$pipeline" "${args[@]}"
"""

with DAG(
    dag_id=DAG_ID,
    description="pipeline retrain: new raw data -> dataset version -> challenger -> promotion",
    doc_md=__doc__,
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["pipeline", "retrain"],
    default_args={
        "owner": "pipeline",
        "retries": RETRIES,
        "retry_delay": timedelta(minutes=20),
        "execution_timeout": TIMEOUT,
    },
) as dag:
    BashOperator(
        task_id="retrain",
        bash_command=RETRAIN_COMMAND,
        env={
            "RETRAIN_VAR_HOME": "{{ var.value.get('PIPELINE_HOME', '') }}",
            "RETRAIN_VAR_CONFIG": "{{ var.value.get('PIPELINE_CONFIG', '') }}",
            "RETRAIN_DEFAULT_HOME": DEFAULT_HOME,
        },
        append_env=True,  # keep the worker's PATH, JAVA_HOME, credentials, PIPELINE_* ...
        skip_on_exit_code=LOCK_HELD,
    )
