"""Every name one stage writes into MLflow and another reads: run and version tags, metric
names, artifact paths. Defined once here; string literals elsewhere are a bug."""

from __future__ import annotations

# what made a run: train | evaluate | sweep | retrain | ingest
JOB_TAG = "pipeline.job"
PARENT_TAG = "mlflow.parentRunId"  # nested runs (sweep trials, retrain steps)
NOTE_TAG = "mlflow.note.content"  # a run's description in the UI

# where a run came from (MLflow's standard source tags, and ours)
SOURCE_NAME, SOURCE_COMMIT = "mlflow.source.name", "mlflow.source.git.commit"
SOURCE_DIRTY = "pipeline.source.dirty"  # true: tracked files differed from the commit
CODE_VERSION = "pipeline.version"  # the package version, with or without a checkout

# dataset lineage, on runs and on model versions
DATASET_URL = "dataset.url"
DATASET_FINGERPRINT = "dataset.fingerprint"

# a training run
CHECKPOINT_URI = "checkpoint.uri"
INIT_FROM_MODEL = "init_from.model"  # train.init_from: the model the weights came from
INIT_FROM_RUN = "init_from.run_id"  # ...and the run that trained it (lineage)
TRAIN_RUN_ID = "train.run_id"  # on a model version: the run that trained it
WORKERS = "workers"  # launch.elastic: the run's workers, logged at the epoch each membership starts
BEST_EPOCH = "best_epoch"  # 1-based: the epoch whose weights the logged model has
BEST_PREFIX = "best_"  # metrics of that epoch: best_val_loss, best_val_accuracy

# registry aliases
CHAMPION, CHALLENGER = "champion", "challenger"

# artifacts of a training run: what the model needs to preprocess its inputs
MODEL_ARTIFACT = "model"  # the Keras model, taking tensors
RAW_MODEL_ARTIFACT = "raw_model"  # the raw-input model (registered): files and texts in
EPOCH_MODEL_TYPE = "keras-weights"  # the logged model of one epoch (mlflow.epoch_models)
EPOCH_MODEL_WEIGHTS = "weights.h5"  # its one file: Keras save_weights
RAW_MODEL_KERAS, RAW_MODEL_DATASET = "keras", "dataset"  # its artifacts: model, preprocessing
DATASET_ARTIFACTS = "dataset"
MANIFEST_ARTIFACT = f"{DATASET_ARTIFACTS}/manifest.json"
LABELS_ARTIFACT = f"{DATASET_ARTIFACTS}/labels.json"
VOCAB_ARTIFACT = f"{DATASET_ARTIFACTS}/vocab.txt"
STATISTICS_ARTIFACT = f"{DATASET_ARTIFACTS}/statistics.json"
STATISTICS_FIGURE = f"{DATASET_ARTIFACTS}/statistics.png"
PREDICTED_LABELS = "predicted_labels.json"  # under <split>/: rows per predicted label
VAL_PREDICTED_LABELS_ARTIFACT = f"val/{PREDICTED_LABELS}"

# an evaluation, on its run and on the model version
EVAL_MODEL_URI = "evaluation.model_uri"
EVAL_SPLIT = "evaluation.split"
MODEL_NAME, MODEL_VERSION = "model.name", "model.version"

# promotion, on the judged version; DECISION last: its presence means the version was judged
PROMOTION = "promotion."
DECISION = "promotion.decision"  # promoted | rejected
REPLACED_BY, REPLACED_AT = "promotion.replaced_by", "promotion.replaced_at"

# data validation, on the run that checked or used a version (and on the registered version)
VALIDATION_STATUS = "validation.status"  # ok | warning | error
VALIDATION_ERRORS, VALIDATION_WARNINGS = "validation.errors", "validation.warnings"  # features
VALIDATION_REFERENCE = "validation.reference"
VALIDATION_ARTIFACTS = "validation"  # report.html and validation.json

# sweeps and retrains
SWEEP_BEST, SWEEP_BEST_RUN = "sweep.best", "sweep.best_run_id"
SWEEP_RUN_ID, SWEEP_VALUES = "sweep.run_id", "sweep.values"
SWEEP_PRUNED_EPOCH = "sweep.pruned_epoch"  # 1-based: a tpe sweep's pruner stopped the run there
SWEEP_RESUMED_FROM = "sweep.resumed_from"  # on a tpe sweep's parent: the previous invocation's
RETRAIN_OUTPUT, RETRAIN_RUN_ID = "retrain.output", "retrain.run_id"
RETRAIN_CHANGES, RETRAIN_RECOVERED_BY = "retrain.changes", "retrain.recovered_by"
RETRAIN_MODEL_VERSION, RETRAIN_DECISION = "retrain.model_version", "retrain.decision"


def eval_tag(split: str, name: str) -> str:
    """A model version's evaluation result on ``split``: ``eval.<split>.<name>``."""
    return f"eval.{split}.{name}"


def lower_is_better(metric: str) -> bool:
    """Losses, times and errors fall as a model improves; everything else rises."""
    return "loss" in metric or metric.endswith(("_time_s", "error"))


# an evaluation's accuracy under corruption (evaluation.robustness)
ROBUSTNESS = "robustness"  # metric prefix and artifact folder
FGSM = "fgsm"  # the adversarial check's name among the corruptions
ROBUSTNESS_MEAN = f"{ROBUSTNESS}.mean_corruption_accuracy"  # over corruptions and severities
ROBUSTNESS_RELATIVE = f"{ROBUSTNESS}.relative_corruption_accuracy"  # that mean / clean accuracy
ROBUSTNESS_FIGURE = f"{ROBUSTNESS}/accuracy_by_severity.png"


def robustness_metric(corruption: str, severity: int | None = None) -> str:
    """``robustness.jpeg.2.accuracy``; ``robustness.clean.accuracy`` without a severity."""
    middle = f"{corruption}.{severity}" if severity is not None else corruption
    return f"{ROBUSTNESS}.{middle}.accuracy"

EXPLANATIONS = "explanations"  # the artifact folder of an evaluation's explanations
