"""Typed configuration: conf/default.yaml, merged with a user file and dotted overrides.

Validated once, here, at the edge; errors name the offending key.
"""

from __future__ import annotations

import codecs
import ipaddress
import logging
import os
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.errors import PipelineError

# read through importlib.resources: the package may be a zip (spark-submit --py-files)
DEFAULT_CONFIG = resources.files("pipeline") / "resources" / "default.yaml"
log = logging.getLogger(__name__)


class ConfigError(PipelineError, ValueError):
    """A configuration file, key or value is wrong; the message says which."""

    exit_code = 2


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SparkConfig(_Section):
    master: str
    app_name: str
    driver_memory: str
    log_level: Literal["ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"]
    conf: dict[str, str] = Field(default_factory=dict)


class ImagesConfig(_Section):
    height: int = Field(gt=0, le=4096)
    width: int = Field(gt=0, le=4096)
    color_mode: Literal["rgb", "grayscale"]
    resize: Literal["fit", "pad", "crop"]
    min_size: int = Field(ge=1)
    max_pixels: int = Field(gt=0)
    animation: Literal["first_frame", "reject"]
    encoding: Literal["png", "jpeg"]
    png_compression: int = Field(ge=0, le=9)
    jpeg_quality: int = Field(ge=1, le=100)


class TextConfig(_Section):
    fallback_encoding: str
    on_decode_error: Literal["quarantine", "replace"]
    lowercase: bool
    strip_html: bool
    url_token: str
    email_token: str
    mention_token: str
    labels: list[str]
    min_chars: int = Field(ge=1)
    max_chars: int = Field(ge=1)
    token_pattern: str
    vocab_size: int = Field(ge=1)
    min_count: int = Field(ge=1)
    max_len: int = Field(ge=1)
    near_duplicates: bool
    shingle_size: int = Field(ge=1)
    near_duplicate_jaccard: float = Field(ge=0.1, le=1)  # below 0.1 MinHash bands miss pairs

    @field_validator("fallback_encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError("not a known encoding") from None
        return value

    @field_validator("token_pattern")
    @classmethod
    def _valid_pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _check(self) -> TextConfig:
        if self.min_chars > self.max_chars:
            raise ValueError("min_chars must not exceed max_chars")
        return self


class IngestConfig(_Section):
    """How raw inputs are read, whatever their kind; not part of a version's fingerprint, so a
    retrain may change it."""

    # a file's bytes travel as one Spark binary value, which cannot reach 2 GiB
    max_file_bytes: int = Field(gt=0, lt=2**31)


class SplitConfig(_Section):
    train: float = Field(ge=0, le=1)
    val: float = Field(ge=0, le=1)
    test: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1.0, got {total:g}")
        if self.train == 0:
            raise ValueError("train must be > 0")
        return self


class DatasetConfig(_Section):
    rows_per_row_group: int = Field(gt=0)
    min_row_groups: int = Field(gt=0)
    row_groups_per_file: int = Field(gt=0)
    row_group_size_mb: int = Field(gt=0)


class ImageCnnConfig(_Section):
    conv_filters: list[Annotated[int, Field(gt=0)]] = Field(min_length=1)
    dense_units: int = Field(gt=0)


class TextCnnConfig(_Section):
    embedding_dim: int = Field(gt=0)
    filters: int = Field(gt=0)
    kernel_size: int = Field(gt=0)
    dense_units: int = Field(gt=0)


class TextRnnConfig(_Section):
    embedding_dim: int = Field(gt=0)
    cell: Literal["gru", "lstm"]
    units: int = Field(gt=0)
    bidirectional: bool
    dense_units: int = Field(gt=0)


class ScheduleConfig(_Section):
    name: Literal["constant", "cosine", "step"]
    warmup_epochs: float = Field(ge=0)
    decay_every_epochs: int = Field(ge=1)
    decay_rate: float = Field(gt=0, le=1)


class AugmentConfig(_Section):
    flip: Literal["none", "horizontal", "vertical", "both"]
    shift: float = Field(ge=0, lt=1)
    rotation: float = Field(ge=0, le=180)

    @property
    def enabled(self) -> bool:
        return self.flip != "none" or self.shift > 0 or self.rotation > 0


class EarlyStoppingConfig(_Section):
    patience: int = Field(ge=0)
    min_delta: float = Field(ge=0)


class TrainConfig(_Section):
    """What a model learns: changing any of these makes another run (``--resume`` refuses)."""

    model: Literal["auto", "image_cnn", "text_cnn", "text_rnn"]
    workers: int = Field(ge=1)
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    seed: int
    activation: Literal["relu", "tanh", "sigmoid"]
    loss: Literal["categorical_crossentropy", "binary_crossentropy", "mse"]
    optimizer: Literal["sgd", "momentum", "adam", "rmsprop"]
    learning_rate: float = Field(gt=0)
    momentum: float | None = Field(default=None, gt=0, lt=1)
    schedule: ScheduleConfig
    dropout: float = Field(ge=0, lt=1)
    l2: float = Field(ge=0)
    early_stopping: EarlyStoppingConfig
    keep_best: Literal["val_loss", "val_accuracy"] | None  # None: the last epoch's weights
    augment: AugmentConfig
    image_cnn: ImageCnnConfig
    text_cnn: TextCnnConfig
    text_rnn: TextRnnConfig
    checkpoint_dir: str = Field(min_length=1)
    shuffle_buffer: int = Field(ge=0)
    class_weight: Any  # "none" | "balanced" | {label: weight > 0}: see _class_weight
    sampling: Literal["none", "balanced"]
    precision: Literal["float32", "mixed_float16", "mixed_bfloat16"]
    init_from: str | None = Field(default=None, min_length=1)  # a model URI
    freeze: list[Annotated[str, Field(min_length=1)]]  # layer names, or ["backbone"]
    freeze_epochs: int = Field(ge=1)
    fine_tune_learning_rate: float | None = Field(default=None, gt=0)

    @field_validator("class_weight", mode="before")
    @classmethod
    def _class_weight(cls, value: Any) -> str | dict[str, float]:
        if value in ("none", "balanced"):
            return value
        if not isinstance(value, Mapping) or not value:
            raise ValueError("expected none, balanced or a mapping of labels to weights")
        bad = [f"{k}: {v!r}" for k, v in value.items() if isinstance(v, bool)
               or not isinstance(v, int | float) or not 0 < v < float("inf")]
        if bad:
            raise ValueError(f"weights must be positive numbers ({', '.join(bad)})")
        return {str(k): float(v) for k, v in value.items()}

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        self._check_transfer()
        if self.sampling == "balanced" and self.class_weight != "none":
            raise ValueError("train.sampling=balanced already evens the classes out; set "
                             "train.class_weight to none (or sampling to none)")
        if self.optimizer != "momentum" and self.momentum is not None:
            raise ValueError(f"train.momentum is only used by optimizer 'momentum', not "
                             f"'{self.optimizer}'")
        if self.schedule.warmup_epochs > self.epochs:
            raise ValueError(f"train.schedule.warmup_epochs ({self.schedule.warmup_epochs:g}) "
                             f"exceeds train.epochs ({self.epochs})")
        if self.model in ("text_cnn", "text_rnn") and self.augment.enabled:
            raise ValueError(f"train.augment (flip, shift, rotation) applies to images; "
                             f"turn it off for {self.model}")
        return self

    def _check_transfer(self) -> None:
        if self.freeze and self.init_from is None:
            raise ValueError("train.freeze keeps layers as train.init_from left them; set "
                             "train.init_from (frozen random weights learn nothing)")
        if self.freeze and self.freeze_epochs > self.epochs:
            raise ValueError(f"train.freeze_epochs ({self.freeze_epochs}) exceeds train.epochs "
                             f"({self.epochs})")


# A DNS host name (RFC 1123 labels: letters, digits, inner hyphens) or an IPv4 address: nothing
# a shell or ssh could read as an option, a word break or a substitution.
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _is_host(name: str) -> bool:
    """True for ``node1``, ``node1.example.com`` or ``10.0.0.7``; an IP with a bad octet fails."""
    if not name or len(name) > 253:
        return False
    if re.fullmatch(r"[0-9.]+", name):
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            return False
        return True
    return all(_HOST_LABEL.fullmatch(label) for label in name.split("."))


def _is_slots(text: str) -> bool:
    return text.isascii() and text.isdigit() and 1 <= int(text) <= 100_000


class LaunchConfig(_Section):
    """Where and how training runs, not what it learns: a resumed run may change these."""

    launcher: Literal["local", "spark", "hosts"]
    hosts: str
    threads_per_worker: int = Field(ge=1)
    reader_workers: int = Field(ge=1)
    start_timeout_s: int = Field(gt=0)
    stall_timeout_s: int = Field(gt=0)
    ssh_port: int | None = Field(default=None, gt=0, lt=65536)  # launcher hosts: sshd's port
    ssh_identity_file: str = ""  # launcher hosts: the private key ssh logs in with
    elastic: bool  # Horovod's elastic mode: a lost host is set aside, the others train on
    discovery_script: str  # elastic: an executable printing the usable host:slots, one a line
    min_workers: int = Field(ge=1)  # elastic: fewer workers than this ends the job
    host_cooldown_s: int = Field(ge=1, le=3600)  # elastic: a failed host's first set-aside

    @field_validator("hosts")
    @classmethod
    def _hosts_format(cls, value: str) -> str:
        """Only ``name:slots`` items: the names reach ssh and Horovod's shell commands."""
        for item in value.split(",") if value else []:
            host, sep, slots = item.rpartition(":")
            if not sep or not _is_host(host) or not _is_slots(slots):
                raise ValueError(f"{item!r} is not host:slots, a host name or IPv4 address "
                                 "and a slot count, no spaces (e.g. node1:2,node2:2)")
        return value

    @property
    def host_slots(self) -> int:
        return sum(int(item.rpartition(":")[2]) for item in filter(None, self.hosts.split(",")))

    @model_validator(mode="after")
    def _check(self) -> LaunchConfig:
        if self.launcher == "hosts" and not (self.hosts or self.discovery_script):
            raise ValueError("launcher 'hosts' needs launch.hosts, e.g. node1:2,node2:2")
        if self.launcher != "hosts" and self.hosts:
            raise ValueError(f"launch.hosts is only used by launcher 'hosts', not "
                             f"'{self.launcher}'")
        if self.elastic:
            self._check_elastic()
        elif self.discovery_script:
            raise ValueError("launch.discovery_script is only used when launch.elastic is true")
        return self

    def _check_elastic(self) -> None:
        """Horovod sets a failed host aside whole: elastic mode needs hosts of their own."""
        if self.launcher != "hosts":
            raise ValueError(f"launch.elastic needs launcher 'hosts' (Horovod sets aside the "
                             f"whole host of a failed worker, so the '{self.launcher}' launcher's "
                             "one host would end the job)")
        if self.discovery_script and self.hosts:
            raise ValueError("launch.elastic takes its hosts from launch.discovery_script or "
                             "from launch.hosts, not both")
        if self.discovery_script and not (os.path.isfile(self.discovery_script)
                                          and os.access(self.discovery_script, os.X_OK)):
            raise ValueError(f"launch.discovery_script {self.discovery_script!r} is not an "
                             "executable file")
        if not self.discovery_script and len(self.hosts.split(",")) < 2:
            raise ValueError("launch.elastic with fixed launch.hosts needs at least two hosts "
                             "(or a launch.discovery_script)")


class MlflowConfig(_Section):
    tracking_uri: str
    artifact_root: str
    experiment: str = Field(min_length=1)
    ui_host: str = Field(min_length=1)
    ui_port: int = Field(gt=0, lt=65536)
    auth_database_uri: str = Field(min_length=1)  # pipeline ui --auth: MLflow's users database
    epoch_models: bool  # each epoch's weights as a logged model, its metrics linked to it

    @property
    def ui_url(self) -> str:
        """Where the UI answers: the tracking server itself, or ``pipeline ui`` on a local store."""
        if self.tracking_uri.startswith(("http://", "https://")):
            return self.tracking_uri.rstrip("/")
        return f"http://{self.ui_host}:{self.ui_port}"


class RegistryConfig(_Section):
    model_name: str
    register_trained: bool
    metric: Literal["accuracy", "loss"]
    margin: float = Field(ge=0)
    slice_min_rows: int = Field(ge=1)
    slice_margin: float = Field(ge=0)
    min_accuracy: float = Field(ge=0, le=1)
    min_macro_f1: float = Field(ge=0, le=1)
    max_ece: float = Field(ge=0, le=1)
    serving_check: bool
    serving_sample: int = Field(ge=1)


class EvaluationConfig(_Section):
    """What ``pipeline evaluate`` measures beside the split's scores."""

    robustness: bool
    explain_per_class: int = Field(ge=0)
    sample_rows: int = Field(ge=1)
    seed: int


class ValidationConfig(_Section):
    """``pipeline validate`` and the retrain's gate: thresholds and the expectations file."""

    expectations: str  # "" = none
    drift_warning: float = Field(gt=0, le=1)
    drift_error: float = Field(gt=0, le=1)
    max_pvalue: float = Field(gt=0, le=1)
    on_error: Literal["stop", "warn"]

    @model_validator(mode="after")
    def _ordered(self) -> ValidationConfig:
        if self.drift_warning > self.drift_error:
            raise ValueError(f"validation.drift_warning ({self.drift_warning}) is above "
                             f"validation.drift_error ({self.drift_error})")
        return self


class RetrainConfig(_Section):
    kind: Literal["images", "text"]
    input: str = Field(min_length=1)
    output: str = Field(min_length=1)
    text_format: Literal["auto", "folders", "csv", "jsonl", "parquet"]
    text_col: str = Field(min_length=1)
    label_col: str = Field(min_length=1)
    warm_start: bool
    reuse_rows: bool
    lock_dir: str
    lock_stale_after_s: int = Field(ge=60)


class StorageConfig(_Section):
    """Overrides of the AWS environment for S3 locations ("" keeps the environment's)."""

    s3_endpoint_url: str
    s3_region: str


class Config(_Section):
    data_dir: str
    storage: StorageConfig
    spark: SparkConfig
    images: ImagesConfig
    text: TextConfig
    ingest: IngestConfig
    split: SplitConfig
    dataset: DatasetConfig
    train: TrainConfig
    launch: LaunchConfig
    mlflow: MlflowConfig
    registry: RegistryConfig
    evaluation: EvaluationConfig
    retrain: RetrainConfig
    validation: ValidationConfig

    @model_validator(mode="after")
    def _workers_fit_hosts(self) -> Config:
        slots = self.launch.host_slots
        if self.launch.hosts and self.train.workers > slots:
            raise ValueError(f"{self.train.workers} workers (train.workers) need more than the "
                             f"{slots} slots in launch.hosts")
        if self.launch.elastic and self.launch.min_workers > self.train.workers:
            raise ValueError(f"launch.min_workers ({self.launch.min_workers}) exceeds "
                             f"train.workers ({self.train.workers})")
        if self.launch.elastic and self.train.freeze:
            raise ValueError("launch.elastic does not combine with train.freeze: unfreezing "
                             "swaps the optimiser that elastic mode commits")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# keys that moved in a release: (old section, key) -> new section. Files and overrides that
# use the old place keep working, with a warning that names the new one. (``train.elastic``
# never existed, but it is where one looks for it: it is how training runs, not what it learns.)
MOVED_KEYS = {("train", key): "launch" for key in (
    "launcher", "hosts", "threads_per_worker", "reader_workers", "start_timeout_s",
    "stall_timeout_s", "elastic")}


def _migrate_moved_keys(data: dict[str, Any]) -> None:
    for (section, key), target in MOVED_KEYS.items():
        values = data.get(section)
        if isinstance(values, dict) and key in values:
            log.warning("config key '%s.%s' is now '%s.%s'; please update the file or override",
                        section, key, target, key)
            data.setdefault(target, {})[key] = values.pop(key)


def _read_yaml(path: Path | Traversable) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into its key path and a YAML-typed value."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like dotted.key=value")
    parts = key.strip().split(".")
    if any(not part for part in parts):
        raise ConfigError(f"override {text!r} has an empty key segment")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def _apply_override(data: dict[str, Any], parts: list[str], value: Any) -> None:
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise ConfigError(f"unknown config key '{where}' (in override {'.'.join(parts)})")
        node = child
    node[parts[-1]] = value


def _split_spark_conf_override(parts: list[str]) -> list[str]:
    # spark.conf holds free-form Spark keys, which themselves contain dots
    if len(parts) > 2 and parts[:2] == ["spark", "conf"]:
        return ["spark", "conf", ".".join(parts[2:])]
    return parts


def _format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<top level>"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown config key '{key}'")
        elif err["type"] == "missing":
            lines.append(f"missing config key '{key}'")
        else:
            got = err.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            message = err["msg"].removeprefix("Value error, ")
            lines.append(f"config key '{key}': {message}{shown}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Build the configuration: defaults, then ``path``, then each ``key=value`` override."""
    data = _read_yaml(DEFAULT_CONFIG)
    if path is not None:
        data = _merge(data, _read_yaml(Path(path)))
    return _validated(data, overrides)


def with_overrides(cfg: Config, overrides: Iterable[str]) -> Config:
    """A copy of ``cfg`` with ``key=value`` overrides applied and validated again."""
    return _validated(cfg.to_dict(), overrides)


def _validated(data: dict[str, Any], overrides: Iterable[str]) -> Config:
    for text in overrides:
        parts, value = parse_override(text)
        _apply_override(data, _split_spark_conf_override(parts), value)
    _migrate_moved_keys(data)
    if isinstance(data.get("spark", {}).get("conf"), dict):
        data["spark"]["conf"] = {k: str(v) for k, v in data["spark"]["conf"].items()}
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings -> ``{"train.epochs": "8", ...}``: dotted keys, string values."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat
