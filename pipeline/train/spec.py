"""What the driver hands to every worker: small, picklable, complete."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import LaunchConfig, TrainConfig
from pipeline.datasets.manifest import Manifest
from pipeline.tracking.tracker import Tracker
from pipeline.train.checkpoints import Checkpoint


@dataclass(frozen=True)
class TrialRef:
    """A sweep trial (``method: tpe``) that rank 0 reports each epoch's metric to, so that its
    study's pruner can stop a poor training early."""

    storage: str  # the study's database URL
    study_name: str
    trial_id: int  # Optuna's id of the trial in that storage (not its number in the study)
    metric: str  # val_accuracy | val_loss
    pruner: str  # median | halving | none


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
    trial: TrialRef | None = None  # a tpe sweep's trial: report to it, stop when it is pruned
