"""MLflow search filters: every value is quoted by ``runs.quote``, so a ``'`` in a model name,
a path or a parameter never breaks (or changes) a search."""

from __future__ import annotations

import ast

import pytest

from pipeline.tracking.runs import quote
from tests.conftest import REPO

SEARCHES = {"search_runs": 1, "search_model_versions": 0, "search_registered_models": 0,
            "search_experiments": 2, "search_logged_models": 1}  # -> the filter's position


def test_quote_picks_the_quote_character_the_value_does_not_hold():
    assert quote("digits-image_cnn") == "'digits-image_cnn'"
    assert quote("it's") == '"it\'s"'
    assert quote('say "hi"') == "'say \"hi\"'"
    with pytest.raises(ValueError, match="both quote characters"):
        quote("it's \"both\"")


def _filter_argument(call: ast.Call, position: int) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg in ("filter_string", "filter"):
            return keyword.value
    return call.args[position] if len(call.args) > position else None


def _unquoted_parts(node: ast.expr) -> list[str]:
    """Why a filter expression is not built from constants and ``quote(...)`` values."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [repr(node.value)] if "'" in node.value or '"' in node.value else []
    if not isinstance(node, ast.JoinedStr):
        return [f"not a literal or an f-string: {ast.unparse(node)}"]
    problems = []
    for part in node.values:
        if isinstance(part, ast.Constant):
            problems += _unquoted_parts(part)
        elif not _quoted_or_our_key(part.value):
            problems.append(f"{{{ast.unparse(part.value)}}} is not quote(...)")
    return problems


def _quoted_or_our_key(value: ast.expr) -> bool:
    """``quote(...)``, or ``keys.X``: a tag name of ours, between backticks."""
    if isinstance(value, ast.Call) and ast.unparse(value.func) == "quote":
        return True
    return ast.unparse(value).startswith("keys.")


def test_every_mlflow_filter_in_pipeline_quotes_its_values():
    offenders, seen = [], 0
    for path in sorted((REPO / "pipeline").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            if node.func.attr not in SEARCHES:
                continue
            argument = _filter_argument(node, SEARCHES[node.func.attr])
            seen += 1
            if argument is not None:
                offenders += [f"{path.relative_to(REPO)}:{node.lineno}: {problem}"
                              for problem in _unquoted_parts(argument)]
    assert seen >= 4, "the searches were not found: has the code moved?"
    assert offenders == []


@pytest.mark.timeout(120)
def test_searches_find_names_and_paths_holding_a_quote(tmp_path):
    """Against a real sqlite store: a registered model, a run parameter and a retrain output
    whose values hold ``'`` (the output also a password and a signature: the search finds the
    redacted value the run stored)."""
    from pipeline.tracking import keys, registry, runs
    from pipeline.tracking.tracker import Tracker

    store = f"sqlite:///{tmp_path / 'mlruns.db'}"
    tracker = Tracker(store, "pipeline", str(tmp_path / "mlartifacts"))
    client = tracker.client
    name, output = "o'brien-reviews-text_cnn", "https://u:pw@h/it's data?sig=S"  # stored redacted
    train = runs.create_run(tracker, "train", "t", {keys.DATASET_FINGERPRINT: "fp'1"})
    runs.log_params(tracker, train, {"model": "cnn'v2"})
    runs.end_run(tracker, train, ok=False)
    assert runs.latest_unfinished_run(tracker, "fp'1", "cnn'v2") == train
    client.create_registered_model(name)
    client.create_model_version(name, f"file://{tmp_path}/m", run_id=train,
                                tags={keys.DATASET_FINGERPRINT: "fp'1"})
    found = registry.versions_tagged(tracker, name, keys.DATASET_FINGERPRINT, "fp'1")
    assert [ref.version for ref, _ in found] == ["1"]
    retrain = runs.create_run(tracker, "retrain", "r", {keys.RETRAIN_OUTPUT: output})
    assert runs.fail_abandoned_retrains(tracker, output, "test") == [retrain]
