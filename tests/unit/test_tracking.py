"""Tracking helpers without a store: redaction, retries, per-class metrics and figures."""

import numpy as np
import pytest

from pipeline.tracking.params import REDACTED, library_versions, loggable_params
from pipeline.tracking.reports import (
    confusion_figure,
    curves_figure,
    per_class_metrics,
    top_confusions,
)
from pipeline.tracking.retry import Retrying


def test_secrets_are_redacted_by_key_and_inside_uris():
    flat = loggable_params({
        "spark": {"conf": {"spark.hadoop.fs.s3a.secret.key": "AKIA-secret",
                           "spark.hadoop.fs.s3a.access.key": "AKIA", "spark.executor.cores": 2}},
        "mlflow": {"tracking_uri": "https://alice:hunter2@mlflow.example.com/",
                   "api_token": "t0k3n", "db_password": "pw"},
        "text": {"url_token": "xxurl", "token_pattern": r"\w+"},
    })
    assert flat["spark.conf.spark.hadoop.fs.s3a.secret.key"] == REDACTED
    assert flat["spark.conf.spark.hadoop.fs.s3a.access.key"] == REDACTED
    assert flat["mlflow.api_token"] == flat["mlflow.db_password"] == REDACTED
    assert flat["mlflow.tracking_uri"] == f"https://alice:{REDACTED}@mlflow.example.com/"
    assert "hunter2" not in str(flat) and "AKIA" not in str(flat)
    # our own typed text settings are not secrets, whatever their names say
    assert flat["text.url_token"] == "xxurl"
    assert flat["spark.conf.spark.executor.cores"] == "2"


def test_long_values_are_cut_to_mlflows_limit():
    assert len(loggable_params({"a": "x" * 7000})["a"]) == 6000


def test_library_versions_are_read_without_importing():
    versions = library_versions()
    assert versions["tensorflow"].startswith("2.")
    assert set(versions) == {"tensorflow", "horovod", "pyspark", "petastorm", "mlflow"}


def test_retrying_recovers_from_blips_and_reports_what_never_worked():
    calls = []

    def flaky(value):
        calls.append(value)
        if len(calls) < 3:
            raise ConnectionError("tracking server unavailable")

    retrying = Retrying(attempts=4, first_delay_s=0.001)
    assert retrying("metrics", flaky, 1) is True
    assert len(calls) == 3 and retrying.failures == []

    def broken():
        raise OSError("disk full\nmore detail")

    assert retrying("the model", broken) is False
    assert retrying.failures == ["the model: disk full"]


def test_per_class_metrics_from_a_confusion_matrix():
    confusion = np.array([[8, 2, 0], [1, 9, 0], [0, 0, 0]])
    table = per_class_metrics(confusion, ["cat", "dog", "eel"])
    assert table["support"] == [10, 10, 0]
    assert table["precision"] == [pytest.approx(8 / 9, abs=1e-4),
                                  pytest.approx(9 / 11, abs=1e-4), 0.0]
    assert table["recall"] == [0.8, 0.9, 0.0]
    assert table["f1"][0] == pytest.approx(2 * (8 / 9) * 0.8 / (8 / 9 + 0.8), abs=1e-4)


def test_figures_draw_what_they_are_given():
    curves = curves_figure({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8]})
    assert [len(axis.lines) for axis in curves.axes] == [2, 1]
    matrix = confusion_figure(np.array([[3, 1], [0, 4]]), ["a", "b"], "val")
    assert sorted(t.get_text() for t in matrix.axes[0].texts) == ["0", "1", "3", "4"]


def test_a_thousand_classes_draw_the_largest_confusions_in_a_bounded_figure():
    labels = [f"class{i}" for i in range(1000)]
    confusion = np.diag(np.full(1000, 50))
    confusion[7, 3], confusion[999, 0], confusion[5, 5] = 40, 12, 90
    confusion[np.arange(100, 200), np.arange(101, 201)] = 1  # many single mistakes
    assert top_confusions(confusion, labels, 4) == [("class7", "class3", 40),
                                                    ("class999", "class0", 12),
                                                    ("class100", "class101", 1),
                                                    ("class101", "class102", 1)]  # ties in order
    figure = confusion_figure(confusion, labels, "test")
    width, height = figure.get_size_inches()
    assert width <= 8 and height <= 10  # not a 1000 x 1000 grid of numbers
    (axis,) = figure.axes
    names = [tick.get_text() for tick in axis.get_yticklabels()]
    assert len(names) == 25 and names[:2] == ["class7 -> class3", "class999 -> class0"]


def test_by_alias_is_none_only_when_the_alias_or_model_does_not_exist(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from pipeline.tracking import registry
    from pipeline.tracking.tracker import Tracker

    store = f"sqlite:///{tmp_path / 'mlruns.db'}"
    tracker = Tracker(store, "pipeline", str(tmp_path / "mlartifacts"))
    assert registry.by_alias(tracker, "no-such-model", "champion") is None
    MlflowClient(tracking_uri=store, registry_uri=store).create_registered_model("m")
    assert registry.by_alias(tracker, "m", "champion") is None
    # an unreachable server is an error, not "no champion" (which would promote blindly)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with pytest.raises(registry.RegistryError, match="cannot read alias 'champion' of 'm'"):
        registry.by_alias(Tracker("http://127.0.0.1:9", "pipeline", "x"), "m", "champion")


def test_a_tracking_server_keeps_artifacts_in_its_own_store_unless_shared_storage_is_named():
    from pipeline.tracking.tracker import Tracker

    assert Tracker("http://mlflow:5000", "e", "./mlartifacts").artifact_location is None
    assert Tracker("https://mlflow", "e", "/abs/mlartifacts").artifact_location is None
    assert Tracker("http://mlflow:5000", "e", "s3://b/art").artifact_location == "s3://b/art"
    assert Tracker("sqlite:///x.db", "e", "/abs/art").artifact_location == "file:///abs/art"
