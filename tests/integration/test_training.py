"""Two real Horovod processes train on the Petastorm digits; the MLflow run is read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.datasets.reader import read_batches
from pipeline.train.job import train
from tests.conftest import make_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained(digits_dataset, tmp_path_factory):
    url, manifest = digits_dataset
    cfg = make_config(tmp_path_factory.mktemp("train"), "train.epochs=2")
    return cfg, url, manifest, train(cfg, url)


def test_two_workers_ran_the_same_number_of_steps(trained):
    cfg, _, manifest, result = trained
    expected = -(-manifest.splits["train"].rows // (cfg.train.batch_size * 2)) * 2
    assert result.steps_per_rank == [expected, expected]
    assert result.val_accuracy > 0.9


def test_mlflow_run_holds_params_metrics_and_manifest(trained):
    from mlflow.tracking import MlflowClient

    cfg, url, manifest, result = trained
    client = MlflowClient(tracking_uri=cfg.mlflow.tracking_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.workers"] == "2"
    assert run.data.params["dataset.fingerprint"] == manifest.fingerprint
    assert run.data.tags["dataset.url"] == url
    history = client.get_metric_history(result.run_id, "val_accuracy")
    assert [m.step for m in history] == [0, 1]
    assert history[-1].value == pytest.approx(result.val_accuracy)
    assert len(client.get_metric_history(result.run_id, "loss")) == 2
    experiment = client.get_experiment(run.info.experiment_id)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, "only rank 0 may write to MLflow: one run per training job"
    local = client.download_artifacts(result.run_id, "dataset/manifest.json")
    assert manifest.fingerprint in Path(local).read_text()


def test_logged_model_loads_and_predicts(trained):
    import mlflow

    cfg, url, manifest, result = trained
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    model = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/model")
    assert model.metadata.signature is not None
    correct = total = 0
    for batch in read_batches(url, "val", ("image", "label"), 256):
        probs = np.asarray(model.predict(batch["image"].astype("float32")))
        assert probs.shape == (len(batch["label"]), manifest.num_classes)
        correct += int((probs.argmax(axis=1) == batch["label"]).sum())
        total += len(batch["label"])
    assert total == manifest.splits["val"].rows
    assert correct / total == pytest.approx(result.val_accuracy, abs=1e-6)


def test_text_cnn_learns_the_reviews(reviews_dataset, tmp_path):
    import mlflow

    url, manifest = reviews_dataset
    cfg = make_config(tmp_path, "train.epochs=2")
    result = train(cfg, url)
    val = manifest.splits["val"]
    majority = max(val.per_label.values()) / val.rows
    assert result.val_accuracy > majority + 0.1, (result.val_accuracy, majority)
    assert result.steps_per_rank[0] == result.steps_per_rank[1]

    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    run = mlflow.get_run(result.run_id)
    assert run.data.params["model"] == "text_cnn"
    model = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/model")
    batch = next(read_batches(url, "val", ("token_ids", "label"), 256))
    probs = np.asarray(model.predict(batch["token_ids"].astype("int32")))
    assert probs.shape == (len(batch["label"]), manifest.num_classes)


def test_a_model_that_does_not_fit_the_data_is_refused_before_any_run(reviews_dataset,
                                                                       tmp_path):
    from mlflow.tracking import MlflowClient

    from pipeline.train.features import ModelChoiceError

    cfg = make_config(tmp_path, "train.model=image_cnn")
    with pytest.raises(ModelChoiceError, match="cannot train on a text dataset"):
        train(cfg, reviews_dataset[0])
    client = MlflowClient(tracking_uri=cfg.mlflow.tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert not experiments or client.search_runs(experiments) == []
