"""Beyond accuracy, on the session's digits and reviews models: accuracy under corruption at
three severities and explanations, made by ``evaluate`` and recorded in its run; Grad-CAM and
token attributions checked against what they claim to show."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.config import with_overrides
from pipeline.evaluation import corruptions
from pipeline.evaluation.job import evaluate
from pipeline.tracking import keys
from tests.procs import run_pipeline


def _evaluated(model_fixture, dataset_fixture):
    from mlflow.tracking import MlflowClient

    cfg, result = model_fixture
    cfg = with_overrides(cfg, ["evaluation.robustness=true", "evaluation.explain_per_class=1"])
    run_id = evaluate(cfg, result.model_version.uri, dataset_fixture[0], "test").run_id
    client = MlflowClient(tracking_uri=cfg.mlflow.tracking_uri)
    return client, run_id, client.get_run(run_id).data.metrics


def _curves(metrics: dict[str, float], names) -> dict[str, list[float]]:
    return {name: [metrics[keys.robustness_metric(name, s)] for s in (1, 2, 3)] for name in names}


def _check_severity_order(curves: dict[str, list[float]]) -> None:
    """Worse with severity: each corruption's third level no better than its first (within
    0.04, 10 of the 256 rows: a text CNN over short word windows barely notices word order, so
    its shuffle curve is flat within the sample's noise, and one CI run saw 0.72 then 0.75), and
    the mean over corruptions clearly lower at the third than at the first. Between
    neighbouring levels of mild text corruptions the difference is within that noise, so that
    order is not asserted."""
    for name, (first, _, third) in curves.items():
        assert third <= first + 0.04, (name, curves[name])
    means = np.mean(list(curves.values()), axis=0)
    assert means[2] < means[0] - 0.01, means


@pytest.mark.parametrize("kind", ["images", "text"])
def test_evaluation_records_accuracy_under_each_corruption_and_explanations(kind, request):
    fixtures = ("digits_model", "digits_dataset") if kind == "images" else (
        "reviews_model", "reviews_dataset")
    client, run_id, metrics = _evaluated(*(request.getfixturevalue(f) for f in fixtures))
    names = ([c.name for c in corruptions.IMAGE_CORRUPTIONS] if kind == "images" else
             [c.name for c in (*corruptions.TOKEN_CORRUPTIONS, *corruptions.TEXT_CORRUPTIONS)])
    curves = _curves(metrics, names)
    _check_severity_order(curves)
    clean = metrics[keys.robustness_metric("clean")]
    mean = float(np.mean(list(curves.values())))
    assert metrics[keys.ROBUSTNESS_MEAN] == pytest.approx(mean)
    assert metrics[keys.ROBUSTNESS_RELATIVE] == pytest.approx(mean / clean)
    assert mean < clean
    figure = [a.path for a in client.list_artifacts(run_id, keys.ROBUSTNESS)]
    assert figure == [keys.ROBUSTNESS_FIGURE]
    explained = sorted(a.path.split("/")[-1] for a in client.list_artifacts(
        run_id, keys.EXPLANATIONS))
    assert explained == (["grad_cam.png", "integrated_gradients.png"] if kind == "images"
                         else ["token_attributions.html", "top_tokens.png"])
    if kind == "images":  # the adversarial check, on the model's own gradients
        fgsm = _curves(metrics, [keys.FGSM])[keys.FGSM]
        assert clean > fgsm[0] > fgsm[1] > fgsm[2], (clean, fgsm)
    else:
        assert not any(keys.FGSM in name for name in metrics)


def _first_rows(dataset_fixture, rows: int):
    from pipeline.evaluation.scoring import first_rows

    url, manifest = dataset_fixture
    return first_rows(url, manifest, "test", rows)


def _keras(model_fixture):
    import mlflow

    cfg, result = model_fixture
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    return mlflow.tensorflow.load_model(f"runs:/{result.run_id}/model")


def test_grad_cam_puts_most_of_its_mass_on_the_digit_more_often_than_a_random_map(
        digits_model, digits_dataset):
    """On correctly classified test digits: does more than half of the map's mass fall on the
    digit? Its pixels are the strokes (brighter than 64) widened by 2 pixels, the size of a cell
    of the last convolution's 11x11 grid that Grad-CAM is resized from."""
    from scipy import ndimage

    from pipeline.evaluation.explanations import grad_cam

    model, sample = _keras(digits_model), _first_rows(digits_dataset, 200)
    images, labels = sample["image"], sample["label"]
    right = model.predict(images, verbose=0).argmax(axis=1) == labels
    images, labels = images[right], labels[right]
    digit = np.stack([ndimage.binary_dilation(strokes, iterations=2)
                      for strokes in images.mean(axis=-1) > 64])

    def mostly_on_digit(maps: np.ndarray) -> float:
        mass = (maps * digit).sum(axis=(1, 2)) / maps.sum(axis=(1, 2)).clip(1e-9)
        return float((mass > 0.5).mean())

    cam = mostly_on_digit(grad_cam(model, images, labels))
    random = mostly_on_digit(np.random.default_rng(0).random(digit.shape))
    assert cam > random + 0.3, (cam, random)  # about 0.5 against 0.01 here


def test_removing_the_top_token_changes_its_attributions_and_the_prediction(reviews_model,
                                                                           reviews_dataset):
    from pipeline.evaluation.explanations import token_occlusion
    from pipeline.ingest.tokens import PAD

    model, sample = _keras(reviews_model), _first_rows(reviews_dataset, 20)
    ids = sample["token_ids"][(sample["token_ids"] != PAD).sum(axis=1) >= 5][:5]
    probs = model.predict(ids, verbose=0)
    classes = probs.argmax(axis=1)
    for row, cls, before, attribution in zip(ids, classes, probs, token_occlusion(
            lambda x: model.predict(x, verbose=0), ids, classes), strict=True):
        tokens = row[row != PAD]
        top = int(np.argmax(attribution))
        shorter = np.full_like(row, PAD)
        shorter[:len(tokens) - 1] = np.delete(tokens, top)
        after = model.predict(shorter[None], verbose=0)[0]
        assert after[cls] < before[cls]  # the class loses what the token gave it
        assert after[cls] == pytest.approx(before[cls] - attribution[top], abs=1e-4)
        (again,) = token_occlusion(lambda x: model.predict(x, verbose=0), shorter[None],
                                   np.array([cls]))
        assert not np.allclose(again, np.delete(attribution, top), atol=1e-4)


def _explain_cli(cfg, model_uri: str, inputs, out, tmp) -> dict:
    """``pipeline explain --json`` on ``inputs`` as a user runs it; its JSON outcome."""
    done = run_pipeline(["explain", "--model", model_uri, "--input", str(inputs), "--output",
                         str(out), "--json", f"mlflow.tracking_uri={cfg.mlflow.tracking_uri}"],
                        tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_explain_images_files_through_ingests_preparation(digits_model, digits_raw, tmp_path):
    """Raw PNG files (and two that ingest would set aside) -> the maps and every file's
    outcome; the labels are those the served raw-input model gives the same bytes."""
    import mlflow

    cfg, result = digits_model
    inputs = tmp_path / "inputs"
    (inputs / "more").mkdir(parents=True)
    picked = [next((digits_raw / str(d)).glob("*.png")) for d in (0, 3, 7)]
    for i, png in enumerate(picked):
        shutil.copy(png, (inputs if i < 2 else inputs / "more") / f"{png.parent.name}.png")
    (inputs / "broken.png").write_bytes(b"not an image at all")
    (inputs / ".hidden.png").write_bytes(picked[0].read_bytes())
    outcome = _explain_cli(cfg, result.model_version.uri, inputs, tmp_path / "out", tmp_path)
    assert (outcome["inputs"], outcome["explained"]) == (5, 3)
    assert outcome["quarantined"] == {"not_an_image": 1, "hidden_file": 1}
    assert outcome["written"] == ["grad_cam.png", "integrated_gradients.png", "predictions.json"]
    entries = {Path(e["source"]).name: e for e in json.loads(
        (tmp_path / "out" / "predictions.json").read_text())}
    assert set(entries) == {"0.png", "3.png", "7.png", "broken.png", ".hidden.png"}
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    served = mlflow.pyfunc.load_model(result.model_version.uri)  # the raw-input model
    names = ["0.png", "3.png", "7.png"]
    expected = served.predict(pd.DataFrame({"image": [
        next(p for p in (inputs / n, inputs / "more" / n) if p.exists()).read_bytes()
        for n in names]}))
    assert [entries[n]["label"] for n in names] == list(expected["label"])
    np.testing.assert_allclose([entries[n]["confidence"] for n in names],
                               expected["confidence"], atol=1e-5)
    for name in outcome["written"][:2]:
        with Image.open(tmp_path / "out" / name) as figure:  # one row of three inputs
            assert figure.format == "PNG" and figure.width > 2 * figure.height


def test_explain_text_files_colours_their_words(reviews_model, reviews_raw, tmp_path):
    cfg, result = reviews_model
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    texts = {"liked.txt": "a moving , beautifully acted and wonderful film",
             "bored.txt": "a dull , tedious and lifeless mess"}
    for name, text in texts.items():
        (inputs / name).write_text(text)
    (inputs / "binary.txt").write_bytes(bytes(range(256)) * 4)
    outcome = _explain_cli(cfg, result.model_version.uri, inputs, tmp_path / "out", tmp_path)
    assert (outcome["inputs"], outcome["explained"], outcome["quarantined"]) == (
        3, 2, {"binary_content": 1})
    page = (tmp_path / "out" / "token_attributions.html").read_text()
    for word in ("beautifully", "tedious", "lifeless"):
        assert f">{word}</span>" in page
    assert "liked.txt: " in page and "bored.txt: " in page
    assert (tmp_path / "out" / "top_tokens.png").read_bytes().startswith(b"\x89PNG")
