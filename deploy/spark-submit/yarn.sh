#!/usr/bin/env bash
# spark-submit on YARN (client mode: the driver runs here). The executors use a packed copy of
# .venv shipped as an archive, so the nodes need nothing but Java:
#   .venv/bin/pip install venv-pack && .venv/bin/venv-pack -p .venv -o pipeline-venv.tar.gz
#   deploy/spark-submit/yarn.sh JOB [job arguments...]
set -euo pipefail
cd "$(dirname "$0")/../.."
JOB="$1"; shift
export PYSPARK_DRIVER_PYTHON="$(pwd)/.venv/bin/python"
export PYSPARK_PYTHON=./environment/bin/python
exec .venv/bin/spark-submit \
  --master yarn --deploy-mode client \
  --archives pipeline-venv.tar.gz#environment \
  --conf spark.executor.instances=4 --conf spark.executor.cores=2 --conf spark.executor.memory=8g \
  --conf spark.dynamicAllocation.enabled=false \
  "jobs/$JOB.py" --config conf/yarn.yaml "$@"
