"""The ``pipeline`` command: help everywhere, clear errors, no stack traces."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import (
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    EXIT_USAGE,
    error_json,
    jsonable,
    main,
    outcome_json,
)
from pipeline.config import ConfigError
from pipeline.errors import InputError, PipelineError, QuarantineGateError, UsageError

# the result classes are imported in the tests that build them: a module that fails to import
# fails those tests, not every test of the command

COMMANDS = [[], ["doctor"], ["ingest"], ["ingest", "images"], ["ingest", "text"], ["train"],
            ["demo"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_help_on_every_command(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: pipeline")
    if command and command != ["ingest"]:
        assert "--config FILE" in out
        assert "key=value" in out


def test_bad_override_exits_2_naming_the_key(capsys):
    assert main(["train", "--data", "x", "train.epochz=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'train.epochz'" in err
    assert "Traceback" not in err


def test_missing_dataset_is_a_message_not_a_traceback(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert "is not a dataset version" in err
    assert "Traceback" not in err


def test_workers_flag_is_validated_by_the_config(capsys):
    assert main(["train", "--data", "x", "--workers", "0"]) == 2
    assert "config key 'train.workers'" in capsys.readouterr().err


def test_python_dash_m_pipeline_is_the_same_command():
    out = subprocess.run([sys.executable, "-m", "pipeline", "--version"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.startswith("pipeline ")


# --- exit codes --------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]


def _exit_code_table() -> dict[int, str]:
    """README.md, "Exit codes": code -> the "raised as" cell."""
    section = REPO.joinpath("README.md").read_text().split("\n## Exit codes\n", 1)[1]
    rows = re.findall(r"^\| (\d+) \|[^|]*\|([^|]*)\|$", section.split("\n## ", 1)[0], re.M)
    return {int(code): raised.strip() for code, raised in rows}


def _declared_exit_codes() -> dict[str, int]:
    """Every PipelineError class under pipeline/ that sets ``exit_code`` in its body -> the
    code; read from the source, so no module has to be imported to be seen."""
    bases, declared = {}, {}
    for path in (REPO / "pipeline").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            bases[node.name] = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
            for item in node.body:
                target = item.target if isinstance(item, ast.AnnAssign) else (
                    item.targets[0] if isinstance(item, ast.Assign) else None)
                if isinstance(target, ast.Name) and target.id == "exit_code":
                    declared[node.name] = ast.literal_eval(item.value)
    errors, grown = {"PipelineError"}, True
    while grown:
        more = {name for name, of in bases.items() if of & errors} - errors
        errors, grown = errors | more, bool(more)
    return {name: code for name, code in declared.items() if name in errors}


def test_every_exit_code_in_the_readme_is_owned_and_every_owner_is_in_the_readme():
    table, declared = _exit_code_table(), _declared_exit_codes()
    assert set(table) == {0, 1, 2, 3, 4, 5, 75, 130}
    for name, code in declared.items():
        assert code in table, f"{name}.exit_code = {code} is not in README.md, Exit codes"
        assert f"`{name}`" in table[code], f"README.md: code {code} does not name {name}"
    for code, raised in table.items():
        named = re.findall(r"`(\w+)`", raised)
        assert all(declared.get(name) == code for name in named), (code, named, declared)
        if code == 0 or "reserved" in _readme_row(code):
            assert not raised
        elif code == EXIT_USAGE:
            assert "argparse" in raised
        elif code == EXIT_INTERRUPTED:
            assert "KeyboardInterrupt" in raised and "SIGTERM" in raised
        else:
            assert named, f"code {code} is raised by nothing"


def _readme_row(code: int) -> str:
    section = REPO.joinpath("README.md").read_text().split("\n## Exit codes\n", 1)[1]
    return re.search(rf"^\| {code} \|.*$", section, re.M).group(0)


def test_the_error_classes_carry_the_codes_the_source_declares():
    from pipeline.retrain.lock import LockHeldError, LockLostError
    from pipeline.submit import SubmitError, UnknownJobError
    from pipeline.tracking.registry import AliasMovedError

    assert (PipelineError.exit_code, InputError.exit_code, SubmitError.exit_code) == (1, 1, 1)
    assert (LockLostError.exit_code, AliasMovedError.exit_code) == (5, 5)
    assert (UsageError.exit_code, ConfigError.exit_code, UnknownJobError.exit_code) == (2, 2, 2)
    assert QuarantineGateError.exit_code == 3
    assert LockHeldError.exit_code == EXIT_LOCKED == 75
    assert EXIT_INTERRUPTED == 130


def test_a_wrong_command_line_exits_2_with_argparse_and_a_json_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--json"])
    assert info.value.code == EXIT_USAGE
    out, err = capsys.readouterr()
    assert "the following arguments are required: --data" in err
    assert json.loads(out) == {"error": {
        "type": "UsageError", "message": "pipeline train: the following arguments are required: "
                                         "--data", "exit_code": 2}}


def test_usage_errors_found_after_parsing_exit_2_naming_the_command(capsys):
    assert main(["train", "--data", "x", "--run-id", "abc"]) == EXIT_USAGE
    assert capsys.readouterr().err == "pipeline train: --run-id is only used with --resume\n"
    assert main(["runs", "compare", "--top", "0"]) == EXIT_USAGE
    assert capsys.readouterr().err == "pipeline runs compare: --top must be at least 1\n"
    assert main(["validate", "--data", "x"]) == EXIT_USAGE
    assert "nothing to compare with: give --reference URI" in capsys.readouterr().err
    assert main(["validate", "--data", "x", "--predictions", "y"]) == EXIT_USAGE
    assert "give either --data URI or --predictions" in capsys.readouterr().err
    assert main(["validate", "--predictions", "y"]) == EXIT_USAGE
    assert "--predictions needs --model" in capsys.readouterr().err


def test_validating_a_version_without_statistics_says_how_to_get_them(tmp_path, capsys):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "manifest.json").write_text(json.dumps({
        "kind": "images", "source": "x", "created_at": "2026-01-01", "config": {},
        "label_map": {"a": 0}, "discovered": 1, "splits": {}, "quarantine": {}, "schema": [],
        "fingerprint": "f"}))  # a version of the previous release: no statistics.json
    old = str(tmp_path / "old")
    assert main(["validate", "--data", old, "--reference", old]) == 1
    assert "has no statistics.json: it was written before statistics were recorded" in (
        capsys.readouterr().err)


def test_errors_with_json_are_one_object_on_stdout_and_a_message_on_stderr(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nope"), "--json"]) == 1
    out, err = capsys.readouterr()
    error = json.loads(out)["error"]
    assert (error["type"], error["exit_code"]) == ("NotADatasetError", 1)
    assert "is not a dataset version" in error["message"]
    assert err.startswith("pipeline train: error: ") and "Traceback" not in err

    assert main(["train", "--data", "x", "train.epochz=3", "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["error"]["type"] == "ConfigError"


def _lock_held(cfg):
    from pipeline.retrain.lock import LockHeldError

    raise LockHeldError("another retrain holds the lock: host h, pid 7")


@pytest.mark.parametrize(("raised", "code", "message"), [
    (_lock_held, 75, "pipeline retrain: another retrain holds the lock: host h, pid 7\n"),
    (KeyboardInterrupt, 130, "pipeline: interrupted\n")])
def test_the_status_is_the_exit_code_of_what_ended_the_command(monkeypatch, capsys, raised,
                                                                  code, message):
    import pipeline.retrain.workflow as workflow

    def retrain(cfg):
        if isinstance(raised, type):
            raise raised
        raised(cfg)

    monkeypatch.setattr(workflow, "retrain", retrain)
    assert main(["retrain"]) == code
    assert capsys.readouterr() == ("", message)
    assert main(["retrain", "--json"]) == code
    assert json.loads(capsys.readouterr().out)["error"]["exit_code"] == code


class _FakeSpark:
    def stop(self) -> None:
        pass


def _manifest(discovered: int = 10, quarantine: dict[str, int] | None = None):
    from pipeline.datasets.manifest import Manifest, SplitInfo

    quarantine = {"corrupt_image": 2, "duplicate": 1} if quarantine is None else quarantine
    splits = {"train": SplitInfo(5, 1, {"a": 3, "b": 2}), "val": SplitInfo(1, 1, {"a": 1}),
              "test": SplitInfo(1, 1, {"b": 1})}
    return Manifest(kind="images", source="file:///raw", created_at="2024-01-01T00:00:00Z",
                    config={}, label_map={"a": 0, "b": 1}, discovered=discovered, splits=splits,
                    quarantine=quarantine, schema=[], fingerprint="f" * 64,
                    extra={"version_uri": "file:///datasets/d/v0001"})


def test_the_quarantine_gate_exits_3_after_the_summary(monkeypatch, capsys):
    import pipeline.ingest.image_job as image_job
    import pipeline.spark as spark

    monkeypatch.setattr(spark, "get_spark", lambda *a, **k: _FakeSpark())
    monkeypatch.setattr(image_job, "ingest_images", lambda *a, **k: _manifest())
    argv = ["ingest", "images", "--input", "raw", "--output", "out", "--max-bad-fraction", "0.2"]
    assert main(argv) == 3
    out, err = capsys.readouterr()
    assert "dataset version file:///datasets/d/v0001" in out
    assert err == ("pipeline ingest images: 30.0% of the inputs were quarantined, more than "
                   "--max-bad-fraction 20.0%; see the quarantine table\n")

    assert main([*argv, "--json"]) == 3
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["version_uri"] == "file:///datasets/d/v0001"
    assert outcome["error"] == {"type": "QuarantineGateError", "message": err.split(": ", 1)[1]
                                .rstrip("\n"), "exit_code": 3}
    assert main([*argv[:-1], "0.5", "--json"]) == 0
    assert "error" not in json.loads(capsys.readouterr().out)


def test_with_json_stdout_holds_only_the_object_whatever_else_writes_there(monkeypatch, capfd):
    import pipeline.inference.job as inference
    import pipeline.spark as spark
    from pipeline.inference.job import PredictionSummary

    def predict_files(*args, **kwargs):
        print("a stray print")
        os.write(1, b"the JVM or a Horovod worker writing to descriptor 1\n")
        return PredictionSummary("file:///out", 5, 4, {"corrupt_image": 1})

    monkeypatch.setattr(spark, "get_spark", lambda *a, **k: _FakeSpark())
    monkeypatch.setattr(inference, "predict_files", predict_files)
    assert main(["predict", "--model", "models:/m/1", "--input", "in", "--output", "out",
                 "--json"]) == 0
    out, err = capfd.readouterr()
    assert json.loads(out) == {"output_uri": "file:///out", "inputs": 5, "predicted": 4,
                               "quarantined": {"corrupt_image": 1}}
    assert "a stray print" in err and "descriptor 1" in err
    assert main(["predict", "--model", "models:/m/1", "--input", "in", "--output", "out"]) == 0
    assert capfd.readouterr().out.endswith("4 predicted, 1 set aside\n  corrupt_image: 1\n"
                                           "predictions file:///out\n")


# --- the JSON of results ---------------------------------------------------------------------

def _train_result(run_id: str = "run1", accuracy: float = 0.9):
    from pipeline.tracking.registry import ModelRef
    from pipeline.train.job import TrainResult

    return TrainResult(run_id=run_id, model="image_cnn", dataset_url="file:///d/v0001",
                       dataset_fingerprint="f" * 64, val_accuracy=np.float64(accuracy),
                       val_loss=float("nan"), steps_per_rank=[10, 10], local_ranks=[0, 1],
                       initial_epoch=0, epochs_run=3, best_epoch=2, mlflow_failures=[],
                       model_version=ModelRef("digits", "3"))


def _evaluation(alias_run: str = "ev1"):
    from pipeline.evaluation.job import Evaluation
    from pipeline.evaluation.scoring import Scores
    from pipeline.tracking.registry import ModelRef

    scores = Scores(rows=4, loss=0.25, accuracy=0.75, confusion=np.array([[2, 0], [1, 1]]))
    return Evaluation(run_id=alias_run, model_uri="models:/digits@challenger",
                      model=ModelRef("digits", "3"), split="test", dataset_fingerprint="f" * 64,
                      scores=scores)


def _promotion():
    from pipeline.evaluation.promotion import Decision, Promotion
    from pipeline.tracking.registry import ModelRef

    return Promotion(challenger=ModelRef("digits", "3"), champion=None,
                     decision=Decision(True, "no champion yet"),
                     evaluations={"challenger": _evaluation()})


DIGITS_3 = {"name": "digits", "version": "3", "uri": "models:/digits/3"}
EVALUATION = {"run_id": "ev1", "model_uri": "models:/digits@challenger", "model": DIGITS_3,
              "split": "test", "dataset_fingerprint": "f" * 64, "rows": 4, "loss": 0.25,
              "accuracy": 0.75, "confusion": [[2, 0], [1, 1]], "review": None,
              "robustness": None}
TRAINING = {"run_id": "run1", "model": "image_cnn", "dataset_url": "file:///d/v0001",
            "dataset_fingerprint": "f" * 64, "val_accuracy": 0.9, "val_loss": None,
            "steps_per_rank": [10, 10], "local_ranks": [0, 1], "initial_epoch": 0,
            "epochs_run": 3, "best_epoch": 2, "mlflow_failures": [], "model_version": DIGITS_3,
            "pruned_epoch": None}
PROMOTION = {"challenger": DIGITS_3, "champion": None,
             "decision": {"promote": True, "reason": "no champion yet"},
             "evaluations": {"challenger": EVALUATION}, "checks": [], "serving": {}}


def _outcome(result) -> dict:
    outcome = outcome_json(result)
    json.dumps(outcome, allow_nan=False)  # strict JSON: no NaN, no numpy
    return outcome


def test_ingest_json_is_the_summary_not_the_whole_manifest():
    assert _outcome(_manifest()) == {
        "version_uri": "file:///datasets/d/v0001", "kind": "images", "source": "file:///raw",
        "discovered": 10, "accepted": {"train": 5, "val": 1, "test": 1},
        "quarantined": {"corrupt_image": 2, "duplicate": 1}, "bad_fraction": 0.3,
        "fingerprint": "f" * 64}


def test_train_json_has_numbers_not_numpy_and_null_for_nan():
    outcome = _outcome(_train_result())
    assert outcome == TRAINING
    assert type(outcome["val_accuracy"]) is float


def test_sweep_json_lists_the_trials_with_their_values():
    from pipeline.sweep import SweepResult
    from pipeline.tracking.registry import ModelRef

    best = _train_result("run2", 0.95)
    sweep = SweepResult(parent_run_id="parent",
                        trials=[({"train.lr": 0.1}, _train_result()), ({"train.lr": 0.01}, best)],
                        best=best, model_version=ModelRef("digits", "3"))
    outcome = _outcome(sweep)
    assert outcome["sweep_run_id"] == "parent" and outcome["best_run_id"] == "run2"
    assert outcome["trials"][0] == {"values": {"train.lr": 0.1}, **TRAINING}
    assert outcome["trials"][1]["val_accuracy"] == 0.95
    assert outcome["model_version"] == DIGITS_3
    assert outcome["study"] is None  # grid and random store no study


def test_tpe_sweep_json_names_its_study():
    from dataclasses import replace

    from pipeline.sweep import SweepResult

    best, pruned = _train_result("run2", 0.95), replace(_train_result("run3"), pruned_epoch=1)
    sweep = SweepResult("parent", [({"train.lr": 0.01}, best), ({"train.lr": 0.2}, pruned)],
                        best, None, "s-0123456789ab", "sqlite:////sweeps/s.study.db", 1)
    outcome = _outcome(sweep)
    assert outcome["study"] == {"name": "s-0123456789ab", "storage": "sqlite:////sweeps/s.study.db",
                                "pruned": 1}
    assert [t["pruned_epoch"] for t in outcome["trials"]] == [None, 1]


def test_evaluate_json_has_the_scores_inline():
    assert _outcome(_evaluation()) == EVALUATION


def test_evaluate_json_has_the_robustness_metrics():
    from dataclasses import replace

    from pipeline.evaluation.robustness import Robustness

    found = Robustness(rows=4, clean=0.75, curves={"jpeg": [0.75, 0.5, 0.25],
                                                   "fgsm": [0.5, 0.25, 0.0]})
    robustness = _outcome(replace(_evaluation(), robustness=found))["robustness"]
    assert robustness["robustness.jpeg.3.accuracy"] == 0.25
    assert robustness["robustness.fgsm.1.accuracy"] == 0.5
    assert robustness["robustness.mean_corruption_accuracy"] == 0.5  # FGSM aside
    assert robustness["robustness.relative_corruption_accuracy"] == pytest.approx(0.5 / 0.75)


def test_promote_json_has_the_decision_and_both_versions():
    assert _outcome(_promotion()) == PROMOTION


def test_retrain_json_counts_the_changed_files_and_nests_the_steps():
    from pipeline.retrain.inputs import Changes
    from pipeline.retrain.workflow import RetrainResult
    from pipeline.tracking.registry import ModelRef

    result = RetrainResult(changes=Changes(new=["a/1.png", "b/2.png"], changed=[],
                                           removed=["a/0.png"]),
                           dataset_url="file:///d/v0002", built=True, run_id="parent",
                           training=_train_result(), model_version=ModelRef("digits", "3"),
                           promotion=_promotion(), summary="digits v3 is champion")
    assert _outcome(result) == {
        "changes": {"new": 2, "changed": 0, "removed": 1}, "dataset_url": "file:///d/v0002",
        "built": True, "run_id": "parent", "training": TRAINING, "model_version": DIGITS_3,
        "promotion": PROMOTION, "summary": "digits v3 is champion"}
    nothing = RetrainResult(changes=Changes([], [], []), dataset_url=None, built=False,
                            run_id=None, training=None, model_version=None, promotion=None,
                            summary="nothing to do")
    assert _outcome(nothing)["training"] is None


def test_error_json_names_the_class_the_message_and_the_status():
    assert error_json(QuarantineGateError("too many"), 3) == {
        "type": "QuarantineGateError", "message": "too many", "exit_code": 3}
    assert error_json(KeyboardInterrupt(), 130)["message"] == "interrupted"


def test_jsonable_turns_numpy_paths_and_tuples_into_json_types():
    value = {"a": (np.int64(3), np.float32(0.5)), "p": Path("/x"), "inf": float("inf"),
             1: np.array([True, False])}
    assert jsonable(value) == {"a": [3, 0.5], "p": "/x", "inf": None, "1": [True, False]}
