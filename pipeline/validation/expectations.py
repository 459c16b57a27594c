"""Expectations: bounds a version must keep, inferred from a reference version into a YAML file
that a person edits and commits, then checked against any version's statistics."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.config import ConfigError
from pipeline.datasets.statistics import Statistics
from pipeline.validation.findings import Finding, label_sets

HEADER = """\
# Expectations of a dataset version, checked by `pipeline validate --expectations FILE` and by
# `pipeline retrain` when `validation.expectations` names this file. Inferred from {source};
# edit the bounds to what your data may do. A missing or new label, a label under
# min_rows_per_label, a class share or a mean outside its [low, high] is an error; a category
# value not listed is a warning.
"""


class Expectations(BaseModel):
    """The YAML's contents, validated when read (an unknown key is named)."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    labels: list[str]
    min_rows_per_label: int
    class_share: dict[str, tuple[float, float]]
    ranges: dict[str, tuple[float, float]]  # a number's mean over the version
    categories: dict[str, list[str]]


def infer(stats: Statistics) -> Expectations:
    """Bounds a version like ``stats`` keeps: its labels; each class share within half and
    twice its share; each number's mean within half a record-level standard deviation; the
    categories it holds."""
    labels = stats.labels()
    total = sum(labels.values()) or 1
    ranges, categories = {}, {}
    for name in stats.document["features"]:
        definition, found = stats.definition(name), stats.feature(name)
        if not definition["judged"]:  # e.g. oov: low by construction in its own version
            continue
        if definition["kind"] == "numeric" and found.get("mean") is not None:
            half = max(found["std"], _bin_width(definition["edges"], found["mean"])) / 2
            ranges[name] = (round(found["mean"] - half, 6), round(found["mean"] + half, 6))
        elif definition["kind"] == "categorical" and name != "near_constant":
            categories[name] = sorted(found["counts"])
    return Expectations(
        kind=stats.kind, labels=sorted(labels),
        min_rows_per_label=max(1, min(labels.values(), default=0) // 10),
        class_share={k: (round(n / total / 2, 6), round(min(1.0, 2 * n / total), 6))
                     for k, n in sorted(labels.items())},
        ranges=ranges, categories=categories)


def _bin_width(edges: list[float | None], value: float) -> float:
    """The width of the histogram bin holding ``value`` (the last finite one past the top): a
    floor for a range, so a statistic that never varied (every image 28 pixels wide) still
    allows what lands in its bin."""
    finite = [e for e in edges if e is not None]
    for low, high in itertools.pairwise(finite):
        if low <= value < high:
            return high - low
    return finite[-1] - finite[-2] if len(finite) > 1 else 0.0


def write(expectations: Expectations, path: str, source: str) -> None:
    """The YAML a person edits, with a header that says what each part means."""
    data = expectations.model_dump()
    data["class_share"] = {k: list(v) for k, v in data["class_share"].items()}
    data["ranges"] = {k: list(v) for k, v in data["ranges"].items()}
    text = HEADER.format(source=source) + yaml.safe_dump(data, sort_keys=False,
                                                         default_flow_style=None)
    Path(path).write_text(text, encoding="utf-8")


def read(path: str) -> Expectations:
    """The expectations in a YAML file; a clear error naming the file and the bad key."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return Expectations.model_validate(data)
    except FileNotFoundError:
        raise ConfigError(f"expectations file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"expectations file {path} is not valid YAML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'the file'}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(f"expectations file {path}: {problems}") from None


def _label_findings(labels: dict[str, int], expected: Expectations) -> list[Finding]:
    """Labels come or gone, under their minimum, or outside their share."""
    findings = label_sets(set(labels), set(expected.labels), "expectations")
    total = sum(labels.values()) or 1
    for label, rows in sorted(labels.items()):
        if label in expected.labels and rows < expected.min_rows_per_label:
            findings.append(Finding(label, "min_rows", "error", rows, expected.min_rows_per_label,
                                    f"label {label!r} has {rows} rows"))
        low, high = expected.class_share.get(label, (0.0, 1.0))
        if not low <= rows / total <= high:
            findings.append(Finding(label, "class_share", "error", round(rows / total, 6),
                                    f"[{low}, {high}]", f"label {label!r} is "
                                    f"{rows / total:.1%} of the rows"))
    return findings


def check(stats: Statistics, expected: Expectations) -> list[Finding]:
    """Every expectation ``stats`` breaks."""
    if expected.kind != stats.kind:
        raise ConfigError(f"the expectations are of {expected.kind} data; this version holds "
                          f"{stats.kind}")
    findings = _label_findings(stats.labels(), expected)
    for name, (low, high) in expected.ranges.items():
        mean = stats.feature(name).get("mean") if name in stats.document["features"] else None
        if mean is not None and not (low <= mean <= high or math.isclose(mean, low)
                                     or math.isclose(mean, high)):
            findings.append(Finding(name, "range", "error", round(mean, 6), f"[{low}, {high}]",
                                    f"the mean {name} is {mean:.4g}"))
    for name, allowed in expected.categories.items():
        found = stats.feature(name)["counts"] if name in stats.document["features"] else {}
        for value in sorted(set(found) - set(allowed)):
            findings.append(Finding(name, "category", "warning", value, ", ".join(allowed),
                                    f"{found[value]} rows have {name} {value!r}"))
    return findings
