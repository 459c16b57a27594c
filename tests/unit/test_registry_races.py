"""The registry under concurrency and faults, on a real MLflow sqlite store (no Spark, no
TensorFlow: evaluations are stubbed): promotion's compare-and-set of ``champion``, a promotion
interrupted between the alias and its decision, and registered-name collisions."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import ConfigError, load_config
from pipeline.evaluation import promotion
from pipeline.evaluation.job import Evaluation
from pipeline.evaluation.scoring import Scores
from pipeline.redaction import redact
from pipeline.tracking import keys, registry
from pipeline.tracking.registry import CHALLENGER, CHAMPION, AliasMovedError, ModelRef
from pipeline.tracking.tracker import Tracker
from pipeline.train.job import check_registered_name, dataset_root

NAME = "digits-image_cnn"


@pytest.fixture
def store(tmp_path):
    """(config, tracker) on a fresh sqlite store in ``tmp_path``."""
    cfg = load_config(overrides=[f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlruns.db'}",
                                 f"mlflow.artifact_root={tmp_path / 'mlartifacts'}",
                                 "registry.metric=accuracy", "registry.margin=0",
                                 # these versions have no model: the races are under test
                                 "registry.serving_check=false"])
    return cfg, Tracker.from_config(cfg.mlflow)


def _versions(tracker: Tracker, urls: list[str], name: str = NAME) -> list[ModelRef]:
    """One registered version of ``name`` per dataset URL (tagged as pipeline train does)."""
    client = tracker.client
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    return [ModelRef(name, str(client.create_model_version(
        name, source=f"{tracker.artifact_root}/{i}", run_id=None,
        tags={keys.DATASET_URL: redact(url)}).version)) for i, url in enumerate(urls)]


def _stub_evaluate(monkeypatch, accuracy: dict[str, float], during=None) -> None:
    """``evaluate`` returns ``accuracy[model version]``; ``during(model_uri)`` runs first."""
    def evaluate(cfg, model_uri, data, split="test", parent_run_id=None, scores_only=False):
        if during is not None:
            during(model_uri)
        scores = Scores(rows=10, loss=0.5, accuracy=accuracy[model_uri.rsplit("/", 1)[1]],
                        confusion=np.zeros((2, 2), dtype=int))
        return Evaluation("run", model_uri, None, split, "f" * 64, scores)

    monkeypatch.setattr(promotion, "evaluate", evaluate)


def test_promotion_refuses_when_the_champion_moved_while_it_was_judged(store, monkeypatch):
    cfg, tracker = store
    v1, v2, v3 = _versions(tracker, ["file:///d/digits/v0001"] * 3)
    registry.set_alias(tracker, v1, CHAMPION)
    registry.set_alias(tracker, v2, CHALLENGER)

    def another_promotion(model_uri: str) -> None:
        if model_uri == v1.uri:  # while v1 is being scored, v3 is promoted elsewhere
            registry.set_alias(tracker, v3, CHAMPION)

    _stub_evaluate(monkeypatch, {"1": 0.5, "2": 0.9, "3": 0.95}, during=another_promotion)
    with pytest.raises(AliasMovedError, match=r"now points at .* v3, not at .* v1 .*meanwhile"):
        promotion.promote(cfg, NAME, data="file:///d/digits/v0001")
    assert registry.by_alias(tracker, NAME, CHAMPION) == v3  # not overwritten
    assert keys.DECISION not in registry.version_tags(tracker, v2)  # still to be judged
    assert registry.by_alias(tracker, NAME, CHALLENGER) == v2
    assert AliasMovedError.exit_code == 5

    _stub_evaluate(monkeypatch, {"1": 0.5, "2": 0.9, "3": 0.95})  # judged again: v3 stays
    again = promotion.promote(cfg, NAME, data="file:///d/digits/v0001")
    assert (again.champion, again.decision.promote) == (v3, False)
    assert registry.version_tags(tracker, v2)[keys.DECISION] == "rejected"


def test_a_guard_that_raises_stops_the_promotion_before_the_alias_moves(store, monkeypatch):
    cfg, tracker = store
    v1, v2 = _versions(tracker, ["file:///d/digits/v0001"] * 2)
    registry.set_alias(tracker, v1, CHAMPION)
    _stub_evaluate(monkeypatch, {"1": 0.5, "2": 0.9})

    def lost() -> None:
        raise RuntimeError("lock lost")

    with pytest.raises(RuntimeError, match="lock lost"):
        promotion.promote(cfg, NAME, data="file:///d", challenger=v2, guard=lost)
    assert registry.by_alias(tracker, NAME, CHAMPION) == v1


def test_a_promotion_interrupted_before_its_decision_is_finished_next_time(store, monkeypatch):
    cfg, tracker = store
    v1, v2 = _versions(tracker, ["file:///d/digits/v0001"] * 2)
    registry.set_alias(tracker, v1, CHAMPION)
    registry.set_alias(tracker, v2, CHALLENGER)
    _stub_evaluate(monkeypatch, {"1": 0.5, "2": 0.9})
    real = registry.set_alias

    def crash_after_the_alias(tracker, ref, alias):
        real(tracker, ref, alias)
        if alias == CHAMPION:
            raise SystemExit("killed between the alias and the decision tag")

    monkeypatch.setattr(registry, "set_alias", crash_after_the_alias)
    with pytest.raises(SystemExit):
        promotion.promote(cfg, NAME, data="file:///d/digits/v0001")
    monkeypatch.undo()
    assert registry.by_alias(tracker, NAME, CHAMPION) == v2
    assert keys.DECISION not in registry.version_tags(tracker, v2)

    assert promotion.finish_interrupted(tracker, NAME) == v2
    tags = registry.version_tags(tracker, v2)
    assert tags[keys.DECISION] == "promoted" and "0.9000 vs 0.5000" in tags["promotion.reason"]
    assert registry.version_tags(tracker, v1)[keys.REPLACED_BY] == str(v2)
    assert registry.by_alias(tracker, NAME, CHALLENGER) is None  # as a finished promotion
    assert promotion.finish_interrupted(tracker, NAME) is None  # nothing left to repair


def test_a_champion_moved_by_hand_gets_a_decision_saying_so(store):
    _, tracker = store
    (v1,) = _versions(tracker, ["file:///d/digits/v0001"])
    registry.set_alias(tracker, v1, CHAMPION)
    assert promotion.finish_interrupted(tracker, NAME) == v1
    tags = registry.version_tags(tracker, v1)
    assert tags[keys.DECISION] == "promoted" and "by hand" in tags["promotion.reason"]


@pytest.mark.parametrize(("url", "root"), [
    ("s3://b/ds/v0002", "s3://b/ds"), ("s3a://b/ds/v0002/", "s3://b/ds"),
    ("s3://b/ds", "s3://b/ds"), ("/data/ds/v0001", "file:///data/ds"),
    ("hdfs://alice:secret@nn/ds/v0003", "hdfs://alice:<redacted>@nn/ds"),
])
def test_dataset_root_is_the_folder_of_versions(url, root):
    assert dataset_root(url) == root


def test_a_default_name_trained_on_another_dataset_location_is_refused(store):
    cfg, tracker = store
    _versions(tracker, ["s3://b/ds/v0001", "s3a://b/ds/v0002",
                        "hdfs://alice:secret@nn/x/v0001"], name="x-image_cnn")
    _versions(tracker, ["s3://b/ds/v0001"], name="ds-image_cnn")
    check_registered_name(cfg, tracker, "ds-image_cnn", "s3://b/ds/v0007")  # same dataset
    check_registered_name(cfg, tracker, "ds-image_cnn", "s3://b/ds")
    check_registered_name(cfg, tracker, "new-image_cnn", "s3://b/new/v0001")  # a new name
    with pytest.raises(ConfigError, match=r"registry\.model_name.*'ds-image_cnn'.*s3://b/ds, "
                                          r"another dataset location than s3://other/ds"):
        check_registered_name(cfg, tracker, "ds-image_cnn", "s3://other/ds/v0001")
    with pytest.raises(ConfigError, match=r"registry\.model_name"):  # mixed history: refused
        check_registered_name(cfg, tracker, "x-image_cnn", "s3://b/ds/v0003")
    named = load_config(overrides=[f"mlflow.tracking_uri={tracker.uri}",
                                   "registry.model_name=ds-image_cnn"])
    check_registered_name(named, tracker, "ds-image_cnn", "s3://other/ds/v0001")  # on purpose


def test_a_model_trained_elsewhere_on_content_this_dataset_holds_is_the_same_lineage(store):
    """The README's flow: the demo trains on data/datasets/digits; a retrain's data/versions/digits
    starts with the same content (v0001), then grows (v0002) under the same name."""
    cfg, tracker = store
    tracker.client.create_registered_model(NAME)
    tracker.client.create_model_version(NAME, source=f"{tracker.artifact_root}/0", run_id=None,
                                        tags={keys.DATASET_URL: "file:///d/datasets/digits",
                                              keys.DATASET_FINGERPRINT: "demo"})
    check_registered_name(cfg, tracker, NAME, "file:///d/versions/digits/v0002",
                          lambda: {"demo", "grown"})
    with pytest.raises(ConfigError, match=r"registry\.model_name"):
        check_registered_name(cfg, tracker, NAME, "file:///e/digits/v0001", lambda: {"other"})
