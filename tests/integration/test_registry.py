"""MLflow as the system of record: a complete training run, evaluation runs linked to model
versions, and promotion by the margin rule, against a real SQLite tracking store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.datasets.reader import read_batches
from pipeline.evaluation.job import evaluate
from pipeline.evaluation.promotion import promote
from pipeline.tracking import registry
from pipeline.tracking.source import code_version
from pipeline.tracking.tracker import Tracker
from pipeline.train.job import train
from tests.conftest import make_config

SECRET = "s3cr3t-value"


@pytest.fixture(scope="module")
def first(digits_dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("registry")
    cfg = make_config(tmp, "train.epochs=2",
                      f"spark.conf.spark.hadoop.fs.s3a.secret.key={SECRET}")
    return cfg, train(cfg, digits_dataset[0], register=True)


def _client(cfg):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=cfg.mlflow.tracking_uri)


def test_the_training_run_holds_what_a_decision_needs(first, digits_dataset):
    cfg, result = first
    _, manifest = digits_dataset
    client = _client(cfg)
    run = client.get_run(result.run_id)
    params = run.data.params
    assert params["train.workers"] == "2" and params["launch.launcher"] == "local"
    assert params["versions.tensorflow"].startswith("2.15")
    assert params["versions.horovod"] == "0.28.1"
    assert {"versions.pyspark", "versions.petastorm"} <= set(params)
    assert params["spark.conf.spark.hadoop.fs.s3a.secret.key"] == "<redacted>"
    assert SECRET not in str(params) and SECRET not in str(run.data.tags)
    assert run.data.tags["pipeline.job"] == "train"

    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == manifest.fingerprint[:16]
    assert dataset_input.dataset.name == "images:digits"
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "train"

    for key in ("loss", "val_loss", "accuracy", "val_accuracy", "learning_rate", "epoch_time_s",
                "samples_per_s"):
        assert [m.step for m in client.get_metric_history(result.run_id, key)] == [0, 1], key
    assert any(key.startswith("system/cpu") for key in run.data.metrics), run.data.metrics
    commit, _, _ = code_version()  # the UI's Source field: what made the run
    assert commit and run.data.tags["mlflow.source.git.commit"] == commit
    assert run.data.tags["pipeline.source.dirty"] in ("true", "false")
    assert run.data.tags["mlflow.source.name"] and SECRET not in run.data.tags["mlflow.source.name"]

    local = Path(client.download_artifacts(result.run_id, ""))
    for name in ("dataset/manifest.json", "dataset/labels.json", "training_curves.png",
                 "val/confusion_matrix.png", "val/per_class.json", "dataset/statistics.png"):
        assert (local / name).stat().st_size > 0, name
    import json

    table = json.loads((local / "val/per_class.json").read_text())
    assert sum(table["data"][i][table["columns"].index("support")]
               for i in range(len(table["data"]))) == manifest.splits["val"].rows
    # what the model predicted on validation (prediction drift compares with it)
    predicted = json.loads((local / "val/predicted_labels.json").read_text())
    assert sum(predicted.values()) == manifest.splits["val"].rows
    assert set(predicted) == set(manifest.labels)
    # the statistics of the data it learned from
    stats = json.loads((local / "dataset/statistics.json").read_text())
    assert stats["rows"]["all"] == sum(s.rows for s in manifest.splits.values())


def test_training_registers_a_challenger(first):
    cfg, result = first
    ref = result.model_version
    tracker = Tracker.from_config(cfg.mlflow)
    assert ref == registry.by_alias(tracker, "digits-image_cnn", "challenger")
    tags = registry.version_tags(tracker, ref)
    assert tags["train.run_id"] == result.run_id
    assert float(tags["val_accuracy"]) == pytest.approx(result.val_accuracy, abs=1e-6)


def test_evaluate_reads_every_test_row_once_and_links_the_version(first, digits_dataset):
    import mlflow

    cfg, result = first
    url, manifest = digits_dataset
    ev = evaluate(cfg, result.model_version.uri, url, "test")
    assert ev.scores.rows == manifest.splits["test"].rows

    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    model = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/model")
    correct = 0
    for batch in read_batches(url, "test", ("image", "label"), 256):
        probs = np.asarray(model.predict(batch["image"].astype("float32")))
        correct += int((probs.argmax(axis=1) == batch["label"]).sum())
    assert ev.scores.accuracy == pytest.approx(correct / ev.scores.rows, abs=1e-9)

    run = _client(cfg).get_run(ev.run_id)
    assert run.data.metrics["test_rows"] == manifest.splits["test"].rows
    assert run.data.tags["model.version"] == result.model_version.version
    tags = registry.version_tags(Tracker.from_config(cfg.mlflow), result.model_version)
    assert tags["eval.test.run_id"] == ev.run_id
    assert float(tags["eval.test.accuracy"]) == pytest.approx(ev.scores.accuracy, abs=1e-6)

    review = ev.scores.review  # beyond accuracy, in the run and on the version
    assert 0.5 < review.roc_auc <= 1 and 0 < review.macro_f1 <= 1 and 0 <= review.ece < 0.5
    for name in ("macro_f1", "roc_auc", "ece"):
        assert run.data.metrics[f"test_{name}"] == pytest.approx(getattr(review, name))
        assert float(tags[f"eval.test.{name}"]) == pytest.approx(getattr(review, name), abs=1e-6)
    assert sum(b["rows"] for b in review.calibration) == ev.scores.rows
    assert set(review.slices) == {"label", "source", "size"}
    assert set(review.slices["label"]) == set(manifest.labels)
    assert sum(row["rows"] for row in review.slices["source"].values()) == ev.scores.rows
    assert review.slices["size"]["<32"]["rows"] == ev.scores.rows  # every digit is 28 x 28
    kind, value, row = review.worst_slice
    assert row["accuracy"] == min(r["accuracy"] for rows in review.slices.values()
                                  for r in rows.values() if r["rows"] >= 30)
    assert tags["eval.test.worst_slice"].startswith(f"{kind}={value} ")
    local = Path(_client(cfg).download_artifacts(ev.run_id, "test"))
    assert {"reliability.png", "calibration.json", "slices.json"} <= {p.name for p in
                                                                   local.iterdir()}


def test_promotion_follows_the_margin_and_records_the_decision(first, digits_dataset):
    cfg, result = first
    uri, name = Tracker.from_config(cfg.mlflow), "digits-image_cnn"
    opening = promote(cfg, name)
    assert opening.decision.promote and opening.decision.reason == "no champion yet"
    assert registry.by_alias(uri, name, "champion") == result.model_version
    assert registry.by_alias(uri, name, "challenger") is None
    assert [(c.name, c.passed) for c in opening.checks] == [
        ("thresholds", True), ("slices", True), ("serving", True)]  # served over real HTTP
    assert opening.serving["agreement"] == 1.0 and opening.serving["requests"] == 16
    blessed = registry.version_tags(uri, result.model_version)
    assert blessed["promotion.check.serving"].startswith("passed: 16 test inputs over HTTP")
    assert float(blessed["promotion.serving.p95_ms"]) >= float(blessed["promotion.serving.p50_ms"])
    version = result.model_version.version  # the card: linked, in Markdown and HTML
    client = _client(cfg)
    assert (f"Model card: runs:/{result.run_id}/model_card/v{version}.md"
            in client.get_model_version(name, version).description)
    card = Path(client.download_artifacts(result.run_id, f"model_card/v{version}.md")).read_text()
    for section in ("## Intended use", "## Training data", "## Where it came from",
                    "## Evaluation (test split)", "## Known limits", "**promoted**: no champion"):
        assert section in card, section
    assert "| serving | passed | 16 test inputs over HTTP" in card
    html = Path(client.download_artifacts(result.run_id, f"model_card/v{version}.html"))
    assert "<table>" in html.read_text() and "<h2>Blessing</h2>" in html.read_text()

    second = train(make_config(Path(cfg.data_dir).parent, "train.epochs=1"), digits_dataset[0],
                   register=True)
    strict = make_config(Path(cfg.data_dir).parent, "registry.margin=1.0")  # unbeatable
    verdict = promote(strict, name)
    assert not verdict.decision.promote
    assert registry.by_alias(uri, name, "champion") == result.model_version
    assert registry.by_alias(uri, name, "challenger") == second.model_version
    tags = registry.version_tags(uri, second.model_version)
    assert tags["promotion.decision"] == "rejected"
    assert tags["promotion.champion"] == str(result.model_version)
    champion_value = verdict.evaluations["champion"].scores.accuracy
    assert float(tags["promotion.champion_value"]) == pytest.approx(champion_value, abs=1e-6)
    description = _client(cfg).get_model_version(name, second.model_version.version).description
    assert "rejected against digits-image_cnn v1 on the test split" in description


def test_a_challenger_that_cannot_be_served_is_not_promoted(first):
    """A version whose model takes tensors only (as registered before raw-input models) wins on
    the numbers but fails the serving check: the champion stays."""
    import mlflow

    cfg, result = first
    tracker, name = Tracker.from_config(cfg.mlflow), "digits-image_cnn"
    worse = registry.by_alias(tracker, name, "challenger")  # the 1-epoch model rejected above
    registry.set_alias(tracker, worse, "champion")
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    tensors_only = mlflow.register_model(f"runs:/{result.run_id}/model", name,
                                         tags={"dataset.url": result.dataset_url})
    ref = registry.ModelRef(name, str(tensors_only.version))
    loose = make_config(Path(cfg.data_dir).parent, "registry.slice_margin=1")
    verdict = promote(loose, name, challenger=ref)
    scores = {alias: ev.scores.accuracy for alias, ev in verdict.evaluations.items()}
    assert scores["challenger"] > scores["champion"]  # it wins on the numbers...
    assert not verdict.decision.promote  # ...but is not blessed
    assert [(c.name, c.passed) for c in verdict.checks] == [
        ("thresholds", True), ("slices", True), ("serving", False)]
    assert "cannot be served" in verdict.decision.reason
    assert registry.by_alias(tracker, name, "champion") == worse
    assert registry.version_tags(tracker, ref)["promotion.check.serving"].startswith("failed:")
