"""``pipeline demo``: the whole flow on the bundled digits and reviews, on this machine: raw
files, Spark ingest, Horovod training, MLflow runs, registry and promotion."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Config
from pipeline.datasets.manifest import Manifest
from pipeline.evaluation.promotion import Promotion, promote
from pipeline.ingest.image_job import ingest_images
from pipeline.ingest.text_job import ingest_text
from pipeline.samples.digits import write_digits
from pipeline.samples.reviews import write_reviews
from pipeline.spark import get_spark
from pipeline.tracking.tracker import Tracker
from pipeline.tracking.ui import ui_command as mlflow_ui_command
from pipeline.train.job import TrainResult, train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoResult:
    manifest: Manifest
    training: TrainResult
    dataset_dir: Path
    text_manifest: Manifest
    text_dataset_dir: Path
    text_training: TrainResult
    promotions: list[Promotion]


def run_demo(cfg: Config) -> DemoResult:
    """Raw digit and review files -> Spark ingest -> Horovod training -> MLflow runs."""
    data_dir = Path(cfg.data_dir)
    raw_dir, text_raw_dir = data_dir / "raw" / "digits", data_dir / "raw" / "reviews"
    dataset_dir = data_dir / "datasets" / "digits"
    text_dataset_dir = data_dir / "datasets" / "reviews"
    log.info("step 1/4: raw files in %s and %s", raw_dir, text_raw_dir)
    write_digits(raw_dir)
    write_reviews(text_raw_dir)

    log.info("step 2/4: Spark ingest -> %s, %s", dataset_dir, text_dataset_dir)
    spark = get_spark(cfg.spark, app_name="pipeline-demo-ingest")
    try:
        manifest = ingest_images(spark, cfg, str(raw_dir), str(dataset_dir), mode="overwrite")
        text_manifest = ingest_text(spark, cfg, str(text_raw_dir), str(text_dataset_dir),
                                    mode="overwrite")
    finally:
        spark.stop()

    log.info("step 3/4: training with %d Horovod workers", cfg.train.workers)
    register = cfg.registry.register_trained
    result = train(cfg, str(dataset_dir), register=register)
    text_result = train(cfg, str(text_dataset_dir), register=register)

    log.info("step 4/4: challenger against champion on the test split")
    promotions = [promote(cfg, trained.model_version.name)
                  for trained in (result, text_result) if trained.model_version is not None]
    return DemoResult(manifest=manifest, training=result, dataset_dir=dataset_dir,
                      text_manifest=text_manifest, text_dataset_dir=text_dataset_dir,
                      text_training=text_result, promotions=promotions)


def ui_command(cfg: Config) -> str:
    tracker = Tracker.from_config(cfg.mlflow)
    return " ".join(mlflow_ui_command(tracker, cfg.mlflow.ui_host, cfg.mlflow.ui_port))
