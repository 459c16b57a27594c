#!/usr/bin/env bash
# spark-submit on a standalone cluster. Every node has this repository's .venv at the same path
# (deploy/setup_env.sh, or the CPU image); paths and the tracking server in conf/standalone.yaml.
#   deploy/spark-submit/standalone.sh JOB [job arguments...]     JOB: ingest_images | ingest_text | train | predict
set -euo pipefail
cd "$(dirname "$0")/../.."
JOB="$1"; shift
MASTER="${SPARK_MASTER:-spark://spark-master:7077}"
PY="$(pwd)/.venv/bin/python"
exec .venv/bin/spark-submit \
  --master "$MASTER" \
  --conf spark.pyspark.python="$PY" --conf spark.pyspark.driver.python="$PY" \
  --driver-java-options "-Dlog4j2.configurationFile=$(pwd)/pipeline/resources/log4j2.properties" \
  --conf spark.executor.memory=6g --conf spark.executor.cores=2 \
  "jobs/$JOB.py" --config conf/standalone.yaml "$@"
