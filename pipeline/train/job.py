"""Training, driver side: check inputs, open the MLflow run, launch workers, close the run."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pipeline.config import Config
from pipeline.datasets import storage
from pipeline.datasets.manifest import open_version
from pipeline.datasets.reader import check_shardable
from pipeline.errors import InputError
from pipeline.tracking.runs import create_training_run, end_run
from pipeline.tracking.store import absolute_tracking_uri, check_store
from pipeline.train.features import choose_model
from pipeline.train.launcher import run_local
from pipeline.train.spec import WorkerSpec
from pipeline.train.worker import train_worker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    val_accuracy: float
    val_loss: float
    steps_per_rank: list[int]


def train(cfg: Config, data: str) -> TrainResult:
    """Train on the dataset version at ``data``; returns the MLflow run and final metrics."""
    dataset_url, manifest = open_version(storage.to_uri(data))
    workers = cfg.train.workers
    for split in ("train", "val"):
        if split not in manifest.splits:
            raise InputError(f"{dataset_url} has no {split} split; training needs train and val")
        check_shardable(split, manifest.splits[split].row_groups, workers)

    model = choose_model(cfg.train.model, manifest)
    tracking_uri = absolute_tracking_uri(cfg.mlflow.tracking_uri)
    experiment_id = check_store(cfg.mlflow)  # before any compute is spent
    params = {**cfg.to_dict(), "model": model,
              "dataset": {"url": dataset_url, "fingerprint": manifest.fingerprint}}
    run_id = create_training_run(tracking_uri, experiment_id, model, params, manifest,
                                 dataset_url)
    log.info("MLflow run %s", run_id)
    spec = WorkerSpec(dataset_url, manifest, cfg.train, tracking_uri, run_id, model)
    ok = False
    try:
        results = run_local(train_worker, (spec,), workers, cfg.train.start_timeout_s)
        ok = True
    finally:
        end_run(tracking_uri, run_id, ok)
    history = results[0]["history"]
    return TrainResult(run_id=run_id, val_accuracy=history["val_accuracy"][-1],
                       val_loss=history["val_loss"][-1],
                       steps_per_rank=[r["steps"] for r in results])
