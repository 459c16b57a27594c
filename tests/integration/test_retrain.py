"""``pipeline retrain`` as a scheduler runs it: real files arriving, real Spark, Horovod and MLflow.

The tests run in order on one growing raw folder: first retrain, a rerun with nothing new, new
files (a warm-started challenger, while a second retrain started with it is refused), a crash
between training and promotion, a drifted batch.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from pipeline.evaluation.promotion import decide
from tests.conftest import fresh_store
from tests.procs import PIPELINE, Background, run_pipeline

# a scenario test runs up to three retrains (ingest, train, evaluate, promote) of its own
pytestmark = pytest.mark.timeout(1800)

MODEL = "retrain-digits"


class Workspace:
    def __init__(self, root: Path, digits_raw: Path) -> None:
        self.root, self.digits_raw = root, digits_raw
        self.raw, self.versions = root / "raw", root / "versions" / "digits"
        self.tracking_uri = fresh_store(root)
        self.config = root / "retrain.yaml"
        self.config.write_text(yaml.safe_dump({
            "data_dir": str(root / "data"),
            "spark": {"master": "local[2]"},
            "dataset": {"rows_per_row_group": 16},
            "train": {"epochs": 1, "checkpoint_dir": str(root / "checkpoints")},
            "mlflow": {"tracking_uri": self.tracking_uri,
                       "artifact_root": str(root / "mlartifacts")},
            # the serving check, robustness and explanations have their own tests
            # (test_registry.py, test_robustness_and_explanations.py); here every promotion
            # would spend 15 s and more on them for nothing these tests assert
            "registry": {"model_name": MODEL, "serving_check": False},
            "evaluation": {"robustness": False, "explain_per_class": 0},
            "retrain": {"kind": "images", "input": str(self.raw), "output": str(self.versions)},
        }))

    def add_digits(self, start: int, stop: int, invert: bool = False) -> list[str]:
        """Copy digits number ``start`` to ``stop`` (by file name) into the raw folder (with
        ``invert``: white on black becomes black on white, as from a camera gone wrong)."""
        added = []
        for path in sorted(self.digits_raw.rglob("*.png")):
            if start <= int(path.stem) < stop:
                target = self.raw / path.parent.name / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                if invert:
                    Image.fromarray(255 - np.asarray(Image.open(path))).save(target)
                else:
                    shutil.copy2(path, target)
                added.append(f"{path.parent.name}/{path.name}")
        return added

    def retrain(self, *overrides: str) -> subprocess.CompletedProcess:
        return run_pipeline(["retrain", "--config", str(self.config), *overrides], cwd=self.root)

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def model_versions(self) -> list:
        return sorted(self.client().search_model_versions(f"name = '{MODEL}'"),
                      key=lambda v: int(v.version))

    def alias(self, alias: str) -> str | None:
        version = self.client().get_registered_model(MODEL).aliases.get(alias)
        return None if version is None else str(version)

    def version_names(self) -> list[str]:
        return sorted(p.name for p in self.versions.glob("v*"))

    def splits(self, version: str) -> dict[str, str]:
        """source file (relative to the raw folder) -> split, for one dataset version."""
        found = {}
        for split in ("train", "val", "test"):
            table = pq.read_table(self.versions / version / split, columns=["source"])
            for source in table.column("source").to_pylist():
                found[source.split(str(self.raw) + "/", 1)[1]] = split
        return found

    def runs(self, job: str) -> list:
        experiment = self.client().get_experiment_by_name("pipeline")
        return self.client().search_runs([experiment.experiment_id],
                                         f"tags.`pipeline.job` = '{job}'")


@pytest.fixture(scope="module")
def ws(tmp_path_factory, digits_raw) -> Workspace:
    workspace = Workspace(tmp_path_factory.mktemp("retrain"), digits_raw)
    workspace.add_digits(0, 600)
    return workspace


def _ok(result: subprocess.CompletedProcess) -> str:
    """What the command printed and logged, once it succeeded."""
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.mark.slow
def test_first_retrain_builds_trains_and_promotes_under_one_parent_run(ws):
    out = _ok(ws.retrain())
    assert "600 new, 0 changed, 0 removed" in out
    assert ws.version_names() == ["v0001"]
    quarantined = pq.read_table(ws.versions / "v0001" / "quarantine").num_rows
    assert len(ws.splits("v0001")) + quarantined == 600
    versions = ws.model_versions()
    assert [str(v.version) for v in versions] == ["1"]
    assert ws.alias("champion") == "1"
    (parent,) = ws.runs("retrain")
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["retrain.decision"] == "promoted"
    children = ws.client().search_runs([parent.info.experiment_id],
                                       f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(c.data.tags["pipeline.job"] for c in children) == ["evaluate", "ingest", "train"]
    assert versions[0].tags["retrain.run_id"] == parent.info.run_id


@pytest.mark.slow
def test_second_retrain_finds_nothing_new_and_spends_nothing(ws):
    runs_before = len(ws.runs("retrain")) + len(ws.runs("train"))
    out = _ok(ws.retrain())
    assert "0 new, 0 changed, 0 removed" in out
    assert "no new data" in out
    assert ws.version_names() == ["v0001"]
    assert len(ws.model_versions()) == 1
    assert len(ws.runs("retrain")) + len(ws.runs("train")) == runs_before
    # settings that would move old inputs between splits are refused, naming the key
    moved = ws.retrain("split.train=0.7", "split.val=0.2")
    assert moved.returncode == 2, moved.stderr[-2000:]
    assert "config key 'split.train' differs" in moved.stderr
    assert not (ws.versions / ".retrain.lock").exists()  # released on the way out


def test_retrain_of_an_empty_input_folder_does_nothing(tmp_path):
    (tmp_path / "raw").mkdir()
    result = run_pipeline(["retrain", f"retrain.input={tmp_path / 'raw'}",
                           f"retrain.output={tmp_path / 'versions'}",
                           f"mlflow.tracking_uri={fresh_store(tmp_path)}"],
                          cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "nothing to do" in result.stdout
    assert not list((tmp_path / "versions").glob("v*"))


@pytest.mark.slow
def test_new_files_build_a_version_where_old_inputs_keep_their_split(ws):
    """Two retrains started together on the new files: one runs, the other is refused."""
    added = ws.add_digits(600, 720)
    command = [PIPELINE, "retrain", "--config", str(ws.config), "retrain.warm_start=true"]
    processes = [subprocess.Popen(command, cwd=ws.root, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    finished = [(p.wait(timeout=900), *p.communicate()) for p in processes]
    assert sorted(code for code, _, _ in finished) == [0, 75], finished
    (refusal,) = [err for code, _, err in finished if code == 75]
    assert "another retrain is running" in refusal
    (out,) = [out + err for code, out, err in finished if code == 0]
    assert not (ws.versions / ".retrain.lock").exists()
    assert "120 new, 0 changed, 0 removed" in out
    assert ws.version_names() == ["v0001", "v0002"]
    old, new = ws.splits("v0001"), ws.splits("v0002")
    assert {path: new[path] for path in old} == old  # every old input, in its old split
    assert set(added) <= set(new)
    assert {new[path] for path in added} == {"train", "val", "test"}
    # v0001's rows stood for its inputs: read back, not decoded again (README, step 2)
    (ingest_run,) = [r for r in ws.runs("ingest") if r.data.tags.get("dataset.url", "")
                     .endswith("/v0002")]
    assert ingest_run.data.metrics["reused_rows"] == len(old)
    assert ingest_run.data.metrics["carried_files"] > 0

    versions = ws.model_versions()
    assert [str(v.version) for v in versions] == ["1", "2"]
    challenger = versions[1].tags
    (train_run,) = [r for r in ws.runs("train") if r.info.run_id == challenger["train.run_id"]]
    # the warm start is train.init_from: a parameter, and lineage to the champion's run
    assert train_run.data.params["train.init_from"] == f"models:/{MODEL}/1"
    assert train_run.data.tags["init_from.model"] == f"models:/{MODEL}/1"
    assert train_run.data.tags["init_from.run_id"] == versions[0].run_id
    # validated against the champion's data before training: the outcome on both
    assert train_run.data.tags["validation.status"] == challenger["validation.status"] != "error"
    # the decision follows the rule, on numbers measured on v0002's test split for both
    expected = decide("accuracy", float(challenger["promotion.challenger_value"]),
                      float(challenger["promotion.champion_value"]), 0.0)
    assert challenger["promotion.decision"] == ("promoted" if expected.promote else "rejected")
    assert challenger["promotion.dataset_fingerprint"] == challenger["dataset.fingerprint"]
    assert ws.alias("champion") == ("2" if expected.promote else "1")


@pytest.mark.slow
def test_crash_between_training_and_promotion_keeps_the_champion(ws):
    champion = ws.alias("champion")
    ws.add_digits(720, 800)
    crashed = Background(["retrain", "--config", str(ws.config)], cwd=ws.root)
    crashed.wait_for("step 4/5", timeout_s=600)  # trained and registered, not yet judged
    crashed.kill()
    versions = ws.model_versions()
    assert len(versions) == 3
    assert "promotion.decision" not in versions[2].tags
    assert ws.alias("champion") == champion
    assert (ws.versions / ".retrain.lock").exists()  # left behind by the crash

    out = _ok(ws.retrain())
    assert "no new data, but" in out and "left unfinished: promote it now" in out
    versions = ws.model_versions()
    assert len(versions) == 3  # finished the crashed run's work: judged, not trained again
    assert "promotion.decision" in versions[2].tags
    assert ws.version_names() == ["v0001", "v0002", "v0003"]
    crashed_runs = [r for r in ws.runs("retrain") if "retrain.recovered_by" in r.data.tags]
    assert len(crashed_runs) == 1 and crashed_runs[0].info.status == "FAILED"
    assert "nothing to do" in _ok(ws.retrain())


@pytest.mark.slow
def test_a_drifted_batch_stops_the_retrain_and_leaves_the_champion_alone(ws):
    """After the tests above (a champion exists): 100 inverted digits arrive."""
    champion, before = ws.alias("champion"), len(ws.model_versions())
    ws.add_digits(800, 900, invert=True)  # 100 inverted digits among 900
    refused = ws.retrain()
    assert refused.returncode == 4, refused.stderr[-3000:]
    assert "failed validation: " in refused.stderr and "brightness" in refused.stderr
    assert ws.alias("champion") == champion and len(ws.model_versions()) == before
    newest = ws.version_names()[-1]
    record = json.loads((ws.versions / newest / "validation.json").read_text())
    assert record["status"] == "error"
    assert "brightness (new files)" in {f["feature"] for f in record["findings"]}
    parent = max(ws.runs("retrain"), key=lambda run: run.info.start_time)
    assert parent.data.tags["validation.status"] == "error"
    assert parent.data.tags["retrain.decision"] == "refused by validation"
    artifacts = {a.path for a in ws.client().list_artifacts(parent.info.run_id, "validation")}
    assert {"validation/report.html", "validation/validation.json"} <= artifacts
    assert (ws.versions / newest / "validation.html").read_text().count("<svg") > 5
    # the refused version is not unfinished work: while its raw files stay, the next run says
    # so (exit 4 again: the alarm stays up) and trains nothing
    again = ws.retrain()
    assert again.returncode == 4, again.stderr[-3000:]
    assert "was refused by validation (errors in " in again.stderr
    assert "no raw file changed since" in again.stderr
    assert len(ws.model_versions()) == before and ws.version_names()[-1] == newest
    # one good file more does not dilute the bad batch unseen: it is still among the new files
    ws.add_digits(900, 901)
    diluted = ws.retrain()
    assert diluted.returncode == 4, diluted.stderr[-3000:]
    assert "brightness (new files)" in diluted.stderr
    # a person decides to train on it anyway, once; the next scheduled run has nothing to do
    assert "promoted" in _ok(ws.retrain("validation.on_error=warn"))
    assert len(ws.model_versions()) == before + 1
    assert "nothing to do" in _ok(ws.retrain())


def test_text_versions_keep_the_vocabulary_and_the_old_splits(spark, config, reviews_raw,
                                                              tmp_path):
    """The text side of a retrain's ingest: new documents are encoded with the previous
    version's vocabulary (token ids keep their meaning for the champion)."""
    from pipeline.ingest.text_job import ingest_text
    from pipeline.retrain import inputs

    raw = tmp_path / "raw"
    documents = sorted(reviews_raw.rglob("*.txt"))
    for path in documents[:300]:
        (raw / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, raw / path.parent.name / path.name)
    output = tmp_path / "versions"
    first = ingest_text(spark, config, str(raw), str(output), mode="new-version",
                        attachments={"inputs.json": inputs.to_json("x", {})})
    vocabulary = (output / "v0001" / "vocab.txt").read_text()
    for path in documents[-200:]:  # other words, so a rebuilt vocabulary would differ
        (raw / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, raw / path.parent.name / path.name)
    second = ingest_text(spark, config, str(raw), str(output), mode="new-version",
                         vocabulary=vocabulary)
    assert (output / "v0002" / "vocab.txt").read_text() == vocabulary
    assert (output / "v0001" / "inputs.json").exists()
    assert first.discovered == 300 and second.discovered == 500

    def splits(version: str) -> dict[str, str]:
        return {source: split for split in ("train", "val", "test")
                for source in pq.read_table(output / version / split,
                                            columns=["source"]).column("source").to_pylist()}

    old, new = splits("v0001"), splits("v0002")
    assert {source: new[source] for source in old} == old
    assert len(new) > len(old)
