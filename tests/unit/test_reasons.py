"""The quarantine reasons: one enum, the README's tables, and no bare reason strings in code."""

from __future__ import annotations

import ast
import pickle
import re

import pytest

from pipeline.datasets.reasons import MEANINGS, Reason
from pipeline.inference.records import Prediction
from pipeline.ingest.image_records import ImageRecord
from pipeline.ingest.text_records import TextRecord
from tests.conftest import REPO

ROW = re.compile(r"^\| `([^`]+)` \| (.+) \|$")


def _readme_reasons() -> list[tuple[str, str]]:
    """(code, meaning) of every row of the README's ``| reason | meaning |`` tables."""
    rows, in_table = [], False
    for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines():
        if line.strip() == "| reason | meaning |":
            in_table = True
        elif not line.startswith("|"):
            in_table = False
        elif in_table and (match := ROW.match(line)):
            rows.append((match[1], match[2]))
        elif in_table and not line.startswith("|---"):
            pytest.fail(f"a README reason row is not '| `code` | meaning |': {line}")
    return rows


def test_every_reason_has_a_one_line_meaning_and_keeps_its_stored_value():
    assert set(MEANINGS) == set(Reason)
    for reason in Reason:
        assert reason.meaning and "\n" not in reason.meaning and "|" not in reason.meaning
        assert reason == reason.value == reason.name.lower()  # a StrEnum: stored as before
        assert f"{reason}" == reason.value and str(reason) == reason.value


def test_the_readme_tables_list_every_reason_once_with_the_enums_meaning():
    rows = _readme_reasons()
    codes = [code for code, _ in rows]
    assert len(codes) == len(set(codes)), "a reason is listed twice"
    assert set(codes) - {r.value for r in Reason} == set(), "the README lists a non-reason"
    assert {r.value for r in Reason} - set(codes) == set(), "a reason is missing in the README"
    for code, meaning in rows:
        assert meaning == Reason(code).meaning, code


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            yield node, name


def _is_str(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def test_no_module_names_a_reason_with_a_bare_string():
    """``Rejected("...")``, ``X.rejected(..., "...", ...)`` or ``reason="..."``: use ``Reason``."""
    offenders = []
    for path in sorted((REPO / "pipeline").rglob("*.py")):
        for call, name in _calls(ast.parse(path.read_text(encoding="utf-8"))):
            reason_args = [kw.value for kw in call.keywords if kw.arg == "reason"]
            if name == "Rejected" and call.args:
                reason_args.append(call.args[0])
            elif name == "rejected" and len(call.args) >= 3:
                reason_args.append(call.args[2])
            if any(_is_str(arg) for arg in reason_args):
                offenders.append(f"{path.relative_to(REPO)}:{call.lineno}")
    assert offenders == []


@pytest.mark.parametrize("record", [
    ImageRecord.rejected("p", "cat", Reason.CORRUPT_IMAGE, "d"),
    TextRecord.rejected("p", 3, Reason.MALFORMED_ROW, "d"),
    Prediction.rejected("p", None, Reason.UNREADABLE, "d"),
], ids=["image", "text", "prediction"])
def test_rejected_records_hold_plain_strings(record):
    """Spark's JVM unpickler reads rows made in Python (createDataFrame) and knows no enum."""
    assert type(record.reason) is str
    assert b"reasons" not in pickle.dumps(record)
