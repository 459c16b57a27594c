"""Batch inference with Spark: raw files in, one Parquet row per file out, prepared exactly as
ingest prepared the dataset the model was trained on (checked against the stored rows)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.datasets.features import feature_of
from pipeline.datasets.reader import read_batches
from pipeline.inference.job import predict_files
from tests.conftest import stored_rows
from tests.procs import run_pipeline


def _copy_some(raw: Path, target: Path, per_label: int) -> dict[str, str]:
    """Copy the first files of each label folder; {copied path: original path}."""
    copied = {}
    for folder in sorted(p for p in raw.iterdir() if p.is_dir()):
        (target / folder.name).mkdir(parents=True, exist_ok=True)
        for original in sorted(folder.iterdir())[:per_label]:
            copy = target / folder.name / original.name
            shutil.copy(original, copy)
            copied[copy.as_uri().replace("file:///", "file:/")] = (
                original.as_uri().replace("file:///", "file:/"))
    return copied


def _predict(kind_dataset, trained, raw: Path, tmp: Path, spark, broken: dict[str, bytes]):
    import mlflow

    _, manifest = kind_dataset
    cfg, result = trained
    inputs = tmp / "inputs"
    copied = _copy_some(raw, inputs, per_label=15)
    for name, content in broken.items():
        (inputs / name).parent.mkdir(parents=True, exist_ok=True)
        (inputs / name).write_bytes(content)
    summary = predict_files(spark, cfg, result.model_version.uri, str(inputs),
                            str(tmp / "predictions"))
    out = pd.read_parquet(tmp / "predictions").set_index("source")
    assert len(out) == summary.inputs == len(copied) + len(broken)  # one row per file
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    model = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/model")  # the tensor model
    return manifest, copied, out, model


def test_images_are_predicted_from_ingests_pixels(spark, digits_raw, digits_dataset,
                                                  digits_model, tmp_path):
    broken = {"3/empty.png": b"", "7/notes.png": b"not an image at all",
              "tiny.png": Path(next(digits_raw.glob("1/*.png"))).read_bytes()[:40]}
    manifest, copied, out, model = _predict(digits_dataset, digits_model, digits_raw, tmp_path,
                                            spark, broken)
    reasons = out["reason"].dropna()
    assert set(reasons.index.str.rsplit("/", n=1).str[-1]) == {"empty.png", "notes.png",
                                                              "tiny.png"}
    assert out.loc[reasons.index, "predicted_label"].isna().all()

    stored = stored_rows(digits_dataset[0], "image")
    sources = [s for s in copied if copied[s] in stored]  # accepted by ingest
    assert len(sources) >= 140
    pixels = feature_of(manifest).model_input(np.stack([stored[copied[s]] for s in sources]))
    expected = np.asarray(model.predict(pixels))
    got = np.stack(out.loc[sources, "probabilities"].to_numpy())
    np.testing.assert_allclose(got, expected, atol=1e-6)
    good = out.loc[sources]
    assert (good["predicted_label"] == good["true_label"]).mean() > 0.8
    assert (good["score"] == got.max(axis=1)).all()


def test_text_is_predicted_from_ingests_token_ids(spark, reviews_raw, reviews_dataset,
                                                   reviews_model, tmp_path):
    broken = {"fresh/blank.txt": b"   \n\t ", "rotten/markup.txt": b"<p> </p>"}
    manifest, copied, out, model = _predict(reviews_dataset, reviews_model, reviews_raw,
                                            tmp_path, spark, broken)
    assert set(out["reason"].dropna()) == {"empty_text"}
    assert out["reason"].notna().sum() == 2
    stored = stored_rows(reviews_dataset[0], "token_ids")
    sources = [s for s in copied if copied[s] in stored]
    assert len(sources) >= 40
    expected = np.asarray(model.predict(np.stack([stored[copied[s]] for s in sources])
                                        .astype("int32")))
    got = np.stack(out.loc[sources, "probabilities"].to_numpy())
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert set(out.loc[sources, "true_label"]) == set(manifest.labels)


def test_a_dataset_version_is_predicted_row_by_row(spark, digits_dataset, digits_model,
                                                   reviews_dataset, tmp_path):
    import mlflow

    from pipeline.tracking.models import ModelMismatchError

    url, manifest = digits_dataset
    cfg, result = digits_model
    summary = predict_files(spark, cfg, result.model_version.uri, url, str(tmp_path / "out"))
    rows = sum(split.rows for split in manifest.splits.values())
    assert summary.inputs == summary.predicted == rows
    out = pd.read_parquet(tmp_path / "out").set_index("source")
    assert len(out) == rows and out["reason"].isna().all()

    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    model = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/model")  # the tensor model
    batch = next(read_batches(url, "test", ("image", "label_name", "source"), 128))
    expected = np.asarray(model.predict(feature_of(manifest).model_input(batch["image"])))
    got = np.stack(out.loc[list(batch["source"]), "probabilities"].to_numpy())
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert list(out.loc[list(batch["source"]), "true_label"]) == list(batch["label_name"])

    with pytest.raises(ModelMismatchError, match="was trained on images"):
        predict_files(spark, cfg, result.model_version.uri, reviews_dataset[0],
                      str(tmp_path / "wrong"))


def test_prediction_drift_is_judged_against_the_models_training_data(spark, digits_raw,
                                                                     digits_model, tmp_path):
    cfg, result = digits_model
    normal = tmp_path / "normal"
    copied = _copy_some(digits_raw, normal, per_label=15)
    for path in normal.rglob("*.png"):  # the same files from a camera gone wrong
        target = tmp_path / "inverted" / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(255 - np.asarray(Image.open(path))).save(target)
    for name in ("normal", "inverted"):
        predict_files(spark, cfg, result.model_version.uri, str(tmp_path / name),
                      str(tmp_path / f"predicted-{name}"))
    batch = json.loads((tmp_path / "predicted-normal" / "_statistics.json").read_text())
    assert batch["rows"]["all"] == len(copied)  # every predicted input profiled
    assert sum(batch["features"]["confidence"]["splits"]["all"]["counts"].values()) == len(copied)
    assert sum(batch["labels"]["all"].values()) == len(copied)

    def validate(name: str):
        result_ = run_pipeline(["validate", "--predictions", str(tmp_path / f"predicted-{name}"),
                                "--model", result.model_version.uri, "--json", "--report",
                                str(tmp_path / f"{name}.html"),
                                f"mlflow.tracking_uri={cfg.mlflow.tracking_uri}"], cwd=tmp_path)
        return result_, json.loads(result_.stdout)

    fine, outcome = validate("normal")
    assert fine.returncode == 0, fine.stderr[-2000:]
    assert {c["feature"] for c in outcome["comparisons"]} >= {"label", "brightness"}
    drifted, outcome = validate("inverted")
    assert drifted.returncode == 4, drifted.stderr[-2000:]
    assert "brightness" in {f["feature"] for f in outcome["findings"] if f["severity"] == "error"}
    assert "confidence" in (tmp_path / "inverted.html").read_text()
