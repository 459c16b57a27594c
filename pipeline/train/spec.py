"""What the driver hands to every worker: small, picklable, complete."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import LaunchConfig, TrainConfig
from pipeline.datasets.manifest import Manifest
from pipeline.tracking.tracker import Tracker
from pipeline.train.checkpoints import Checkpoint


@dataclass(frozen=True)
class WorkerSpec:
    dataset_url: str
    manifest: Manifest
    train: TrainConfig
    launch: LaunchConfig
    tracker: Tracker
    run_id: str
    model: str
    checkpoint_root: str
    resume_from: Checkpoint | None = None
    epoch_models: bool = True  # mlflow.epoch_models: each epoch's weights as a logged model
