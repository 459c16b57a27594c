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
