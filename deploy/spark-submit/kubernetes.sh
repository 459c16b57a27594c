#!/usr/bin/env bash
# spark-submit on Kubernetes (cluster mode): driver and executors run the images built from
# deploy/docker/ (CPU for the driver, GPU for the executors); data and artifacts on S3.
# The pod templates (read here, by spark-submit) run both as Spark's user 185 with a read-only
# image; the images start `driver` and `executor` through Spark's entrypoint.sh.
#   IMAGE_CPU=registry/pipeline:cpu IMAGE_GPU=registry/pipeline:gpu deploy/spark-submit/kubernetes.sh JOB [args...]
set -euo pipefail
cd "$(dirname "$0")/../.."
JOB="$1"; shift
exec .venv/bin/spark-submit \
  --master "${K8S_MASTER:-k8s://https://kube-apiserver:6443}" --deploy-mode cluster \
  --conf spark.kubernetes.namespace="${K8S_NAMESPACE:-pipeline}" \
  --conf spark.kubernetes.authenticate.driver.serviceAccountName=spark \
  --conf spark.kubernetes.driver.container.image="${IMAGE_CPU:?set IMAGE_CPU}" \
  --conf spark.kubernetes.executor.container.image="${IMAGE_GPU:?set IMAGE_GPU}" \
  --conf spark.kubernetes.driver.podTemplateFile=deploy/spark-submit/driver-pod.yaml \
  --conf spark.kubernetes.executor.podTemplateFile=deploy/spark-submit/gpu-executor-pod.yaml \
  --conf spark.pyspark.python=/opt/pipeline/.venv/bin/python \
  --conf spark.executor.instances=2 --conf spark.executor.cores=4 --conf spark.executor.memory=16g \
  --conf spark.executor.resource.gpu.amount=1 --conf spark.task.resource.gpu.amount=1 \
  "local:///opt/pipeline/jobs/$JOB.py" --config /opt/pipeline/conf/kubernetes.yaml "$@"
