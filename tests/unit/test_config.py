"""Configuration: defaults, file merge, overrides and validation messages that name the key."""

from pathlib import Path

import pytest
import yaml

from pipeline.config import DEFAULT_CONFIG, ConfigError, load_config, parse_override

REPO = Path(__file__).resolve().parents[2]


def test_defaults_are_the_embedded_ones():
    cfg = load_config()
    assert cfg.spark.master == "local[*]"
    assert cfg.data_dir == "./data"
    assert cfg.mlflow.tracking_uri == "sqlite:///mlruns.db"
    assert cfg.mlflow.artifact_root == "./mlartifacts"
    assert cfg.train.workers == 2


def test_packaged_defaults_are_conf_default_yaml():
    assert DEFAULT_CONFIG.read_text() == (REPO / "conf" / "default.yaml").read_text()


def test_overrides_are_typed_by_yaml():
    cfg = load_config(overrides=["train.epochs=3", "train.learning_rate=0.01",
                                 "spark.master=local[2]"])
    assert cfg.train.epochs == 3
    assert cfg.train.learning_rate == pytest.approx(0.01)
    assert cfg.spark.master == "local[2]"


def test_spark_conf_keys_keep_their_dots():
    cfg = load_config(overrides=["spark.conf.spark.sql.shuffle.partitions=16"])
    assert cfg.spark.conf["spark.sql.shuffle.partitions"] == "16"


def test_file_is_merged_over_defaults_and_overrides_win(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump({"spark": {"master": "spark://10.0.0.1:7077"},
                                    "train": {"epochs": 20}}))
    cfg = load_config(path, ["train.epochs=5"])
    assert cfg.spark.master == "spark://10.0.0.1:7077"
    assert cfg.spark.app_name == "pipeline"  # untouched defaults survive the merge
    assert cfg.train.epochs == 5


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.epoch=3"], "unknown config key 'train.epoch'"),
    (["trian.epochs=3"], "unknown config key 'trian'"),
    (["train.epochs=many"], "config key 'train.epochs'"),
    (["train.workers=0"], "config key 'train.workers'"),
    (["train.optimizer=adamw"], "config key 'train.optimizer'"),
    (["split.train=0.5"], "config key 'split'"),
    (["images.png_compression=12"], "config key 'images.png_compression'"),
    (["spark.log_level=LOUD"], "config key 'spark.log_level'"),
    (["train.precision=float16"], "config key 'train.precision'"),
    (["train.class_weight=inverse"], "config key 'train.class_weight'"),
    (["train.class_weight={'8': -1}"], "config key 'train.class_weight"),
    (["train.freeze=[backbone]"], "set train.init_from"),
    (["train.init_from=runs:/r/model", "train.freeze=[conv2d]", "train.freeze_epochs=9"],
     "train.freeze_epochs (9) exceeds train.epochs (8)"),
    (["train.sampling=balanced", "train.class_weight=balanced"], "set train.class_weight to none"),
    (["launch.elastic=true"], "launch.elastic needs launcher 'hosts'"),
    (["launch.elastic=true", "launch.launcher=hosts", "launch.hosts=a:2"], "at least two hosts"),
    (["launch.elastic=true", "launch.launcher=hosts", "launch.discovery_script=/nonexistent"],
     "launch.discovery_script '/nonexistent' is not an executable file"),
    (["launch.discovery_script=/bin/true"], "only used when launch.elastic is true"),
    (["launch.elastic=true", "launch.launcher=hosts", "launch.hosts=a:1,b:1",
      "launch.min_workers=3"], "launch.min_workers (3) exceeds train.workers (2)"),
    (["launch.elastic=true", "launch.launcher=hosts", "launch.hosts=a:1,b:1",
      "train.init_from=runs:/r/model", "train.freeze=[conv2d]"],
     "launch.elastic does not combine with train.freeze"),
])
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=overrides)
    assert message in str(info.value)


def test_unknown_key_in_file_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("mlflow:\n  tracking_url: http://x\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'mlflow\.tracking_url'"):
        load_config(path)


def test_missing_file_and_bad_yaml_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(scalar)


@pytest.mark.parametrize("text", ["train.epochs", "=3", "train..epochs=3"])
def test_malformed_overrides(text):
    with pytest.raises(ConfigError):
        parse_override(text)


def test_config_is_immutable():
    cfg = load_config()
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type is internal
        cfg.train.epochs = 99  # type: ignore[misc]
