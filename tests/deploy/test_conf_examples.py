"""The example configurations in conf/ are valid and say what their comments promise."""

from pathlib import Path

import pytest

from pipeline.config import load_config

CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.mark.parametrize(("name", "master", "storage"), [
    ("standalone.yaml", "spark://", "hdfs://"),
    ("yarn.yaml", "yarn", "hdfs://"),
    ("kubernetes.yaml", "k8s://", "s3://"),
])
def test_cluster_examples_load_and_use_shared_storage(name, master, storage):
    cfg = load_config(CONF / name)
    assert cfg.spark.master.startswith(master)
    assert cfg.launch.launcher == "spark"
    # rank 0 writes checkpoints, every rank reads them: they must be on shared storage
    assert cfg.train.checkpoint_dir.startswith(storage)
    assert cfg.mlflow.artifact_root.startswith(storage)
    assert cfg.mlflow.tracking_uri.startswith("http://")
    assert cfg.mlflow.ui_url == cfg.mlflow.tracking_uri


def test_examples_hold_no_credentials():
    for path in CONF.glob("*.yaml"):
        text = path.read_text().lower()
        for word in ("access.key:", "secret.key:", "session.token:", "password:"):
            assert word not in text, (path.name, word)


@pytest.mark.parametrize("name", ["standalone.yaml", "yarn.yaml", "kubernetes.yaml"])
def test_cluster_examples_retrain_on_shared_storage_with_a_safe_lock(name):
    cfg = load_config(CONF / name)
    assert cfg.retrain.input.startswith(("hdfs://", "s3a://"))
    assert cfg.retrain.output.startswith(("hdfs://", "s3://"))
    # the lock needs an atomic create-if-absent: a local or NFS path (pipeline/retrain/lock.py)
    assert cfg.retrain.lock_dir.startswith("/")
