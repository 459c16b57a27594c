#!/usr/bin/env bash
# spark-submit on YARN (client mode: the driver runs here). The executors use a packed copy of
# .venv shipped as an archive, so the nodes need nothing but Java:
#   .venv/bin/pip install venv-pack && .venv/bin/venv-pack -p .venv -o pipeline-venv.tar.gz
#   deploy/spark-submit/yarn.sh JOB [job arguments...]
# YARN unpacks the archive as ./environment in each container, whose Python runs the tasks
# (spark.pyspark.python); the driver keeps this checkout's .venv (spark.pyspark.driver.python).
# Both must be given here, not in conf/yarn.yaml: Spark reads them before the job starts.
set -euo pipefail
cd "$(dirname "$0")/../.."
JOB="$1"; shift
exec .venv/bin/spark-submit \
  --master yarn --deploy-mode client \
  --archives pipeline-venv.tar.gz#environment \
  --conf spark.pyspark.python=./environment/bin/python \
  --conf spark.pyspark.driver.python="$(pwd)/.venv/bin/python" \
  --conf spark.executor.instances=4 --conf spark.executor.cores=2 --conf spark.executor.memory=8g \
  --conf spark.dynamicAllocation.enabled=false \
  "jobs/$JOB.py" --config conf/yarn.yaml "$@"
