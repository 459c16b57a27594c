"""What validation found: one finding per check that did not pass, with its severity."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["warning", "error"]


@dataclass(frozen=True)
class Finding:
    """A check that did not pass: on which feature, what was measured against which limit."""

    feature: str  # a statistic's name (``brightness``), or ``label``
    check: str  # drift, missing_label, new_label, class_share, min_rows, range, category
    severity: Severity
    value: float | str
    limit: float | str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def status(findings: list[Finding]) -> Literal["ok", "warning", "error"]:
    """The worst severity found, or ``ok``."""
    severities = {f.severity for f in findings}
    return "error" if "error" in severities else "warning" if severities else "ok"


def label_sets(found: set[str], expected: set[str], against: str) -> list[Finding]:
    """A label ``expected`` holds and ``found`` lacks, and the reverse: each an error."""
    return ([Finding("label", "missing_label", "error", label, "present",
                     f"label {label!r} is in the {against} but has no row")
             for label in sorted(expected - found)]
            + [Finding("label", "new_label", "error", label, "absent",
                       f"label {label!r} is not in the {against}")
               for label in sorted(found - expected)])


def named(findings: list[dict[str, Any]], severity: Severity = "error") -> list[str]:
    """The features with a finding of ``severity`` (findings as ``Finding.to_dict`` gives
    them), each once, in order."""
    return list(dict.fromkeys(f["feature"] for f in findings if f["severity"] == severity))
