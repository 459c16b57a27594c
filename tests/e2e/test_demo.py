"""``pipeline demo`` end to end in a fresh folder, with fewer epochs (run by conftest.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest

# `pipeline demo` (the session's demo fixture, bounded at 900 s) and its checks
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def test_demo_runs_the_whole_pipeline(demo):
    import mlflow
    from mlflow.tracking import MlflowClient

    from pipeline.datasets.manifest import read_manifest
    from pipeline.datasets.reader import read_batches
    from pipeline.storage import to_uri

    # the demo runs once per session (tests/e2e/conftest.py), shared with test_notebooks.py
    tmp_path, out = demo.path, demo.out
    assert out.returncode == 0, out.stderr[-3000:]
    run_id = re.search(r"MLflow run id (\w+)", out.stdout).group(1)
    accuracy = float(re.search(r"validation accuracy ([\d.]+)", out.stdout).group(1))
    assert "mlflow server --backend-store-uri sqlite:///" in out.stdout
    assert "pipeline runs compare" in out.stdout
    assert "Traceback" not in out.stderr

    # the embedded defaults: raw files, dataset and store under the working directory
    assert len(list((tmp_path / "data" / "raw" / "digits").rglob("*.png"))) == 5000
    dataset = to_uri(tmp_path / "data" / "datasets" / "digits")
    manifest = read_manifest(dataset)
    assert manifest.discovered == 5000 and manifest.accounted()
    reviews = read_manifest(to_uri(tmp_path / "data" / "datasets" / "reviews"))
    assert reviews.kind == "text" and reviews.discovered == 13905 and reviews.accounted()
    assert (tmp_path / "data" / "datasets" / "reviews" / "vocab.txt").exists()
    text_run_id = re.search(r"text MLflow run id (\w+)", out.stdout).group(1)

    tracking_uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    text_run = client.get_run(text_run_id)
    assert text_run.info.status == "FINISHED" and text_run.data.params["model"] == "text_cnn"
    assert len(client.get_metric_history(text_run_id, "val_accuracy")) == 2
    assert run.info.artifact_uri.startswith((tmp_path / "mlartifacts").as_uri())
    history = client.get_metric_history(run_id, "val_accuracy")
    assert len(history) == 2
    assert history[-1].value == pytest.approx(accuracy, abs=1e-4)
    assert accuracy > 0.9

    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    batch = next(read_batches(dataset, "val", ("image", "label"), 64))
    predicted = np.asarray(model.predict(batch["image"].astype("float32"))).argmax(axis=1)
    assert (predicted == batch["label"]).mean() > 0.85

    # the demo ends with a champion for each model, decided on the test split
    from pipeline.tracking import registry
    from pipeline.tracking.tracker import Tracker

    tracker = Tracker(tracking_uri, "pipeline", str(tmp_path / "mlartifacts"))
    for name in ("digits-image_cnn", "reviews-text_cnn"):
        champion = registry.by_alias(tracker, name, "champion")
        assert champion is not None, name
        assert f"{champion} is champion (no champion yet)" in out.stdout
        tags = registry.version_tags(tracker, champion)
        assert tags["promotion.decision"] == "promoted"
        assert int(tags["eval.test.rows"]) > 0


def test_after_the_demo_a_version_validates_against_itself(demo_ok):
    """The issue's "done when", as a new user types it after `make demo`."""
    import subprocess
    import sys
    from pathlib import Path

    pipeline = str(Path(sys.executable).with_name("pipeline"))
    result = subprocess.run([pipeline, "validate", "--data", "data/datasets/digits",
                             "--reference", "data/datasets/digits"], cwd=demo_ok.path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data/datasets/digits: ok (0 errors, 0 warnings)" in result.stdout
    report = demo_ok.path / "data" / "reports" / "validation-digits.html"
    assert f"report: {report.relative_to(demo_ok.path)}" in result.stdout
    assert report.read_text().count("<svg") >= 9
