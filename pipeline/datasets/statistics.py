"""``statistics.json``: the distributions of a dataset version, so two versions compare bin by bin.

Defined here and nowhere else: the features (with fixed, recorded bin edges), how record
profiles add up (``accumulate``/``merge``: plain Python, associative, so Spark's partitions and a
plain loop give the same totals) and the document a version stores beside its manifest.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from pipeline import storage
from pipeline.datasets.profiles import CHANNELS
from pipeline.errors import PipelineError
from pipeline.redaction import redact

STATISTICS_NAME = "statistics.json"
VALIDATION_NAME = "validation.json"  # a retrain's check of the version, written after commit
VALIDATION_REPORT = "validation.html"  # ... and its report
FORMAT_VERSION = 1
INF = math.inf
TOP_TOKENS = 25

_SIZES = (0, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, INF)


@dataclass(frozen=True)
class Feature:
    """A per-record measure: numeric (a histogram over ``edges``, and moments) or categorical
    (counts per value). ``judged``: compared between versions (drift)."""

    name: str
    kind: Literal["numeric", "categorical"]
    doc: str
    edges: tuple[float, ...] = ()
    judged: bool = True

    def bin(self, value: Any) -> str:
        """The histogram key of a value: a bin index for numbers, the value for categories."""
        if self.kind == "categorical":
            return str(value)
        index = bisect.bisect_right(self.edges, float(value)) - 1
        return str(min(max(index, 0), len(self.edges) - 2))


FEATURES: dict[str, tuple[Feature, ...]] = {
    "images": (
        Feature("brightness", "numeric", "mean luma of the stored pixels (0-255)",
                tuple(range(0, 257, 16))),
        Feature("contrast", "numeric", "standard deviation of the luma (0-128)",
                (*range(0, 128, 8), INF)),
        Feature("sharpness", "numeric", "variance of the Laplacian of the luma",
                (0, 1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000, INF)),
        Feature("width", "numeric", "original width in pixels", _SIZES),
        Feature("height", "numeric", "original height in pixels", _SIZES),
        Feature("format", "categorical", "the file's format (PNG, JPEG, ...)"),
        Feature("mode", "categorical", "the file's Pillow mode (RGB, L, P, RGBA, ...)"),
        Feature("near_constant", "categorical",
                "yes when the luma's standard deviation is below 2 (a blank frame)"),
    ),
    "text": (
        Feature("chars", "numeric", "characters of the cleaned text",
                (0, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, INF)),
        Feature("tokens", "numeric", "tokens of the cleaned text",
                (0, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, INF)),
        # not judged: the vocabulary is built on a train split, so its own version's share is
        # low by construction and any other data's is higher (docs/VALIDATION.md)
        Feature("oov", "numeric", "share of the stored token ids outside the vocabulary",
                (0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, INF), judged=False),
        Feature("non_ascii", "numeric", "share of non-ASCII characters",
                (0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, INF)),
        Feature("encoding", "categorical", "how the text was decoded (a codec, or 'string' for "
                "a table's value)", judged=False),
    ),
}


# the statistics of a batch of predictions: its inputs' profiles, by predicted label
PREDICTION_STATISTICS = "_statistics.json"  # beside the predictions ("_": not a data file)
PREDICTED = "predicted"  # the one "split" of a batch
CONFIDENCE = Feature("confidence", "numeric", "the predicted class's probability",
                     (0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, INF), judged=False)
for _kind in ("images", "text"):
    FEATURES[f"{_kind} predictions"] = (*FEATURES[_kind], CONFIDENCE)


def predictions_kind(kind: str) -> str:
    """The statistics kind of a batch of predictions of ``kind`` inputs."""
    return f"{kind} predictions"


def features(kind: str) -> dict[str, Feature]:
    """The features of a dataset kind, by name."""
    return {f.name: f for f in FEATURES[kind]}


def _channel_sums(kind: str) -> tuple[str, ...]:
    return tuple(f"channel_{c}_{m}" for cs in CHANNELS.values() for c in cs
                 for m in ("mean", "square")) if kind.startswith("images") else ()


def empty() -> dict[str, Any]:
    """The accumulator of no record."""
    return {"rows": {}, "labels": {}, "hist": {}, "by_label": {}, "moments": {}, "sums": {},
            "sources": {}}


def _add(counts: dict[str, Any], key: str, amount: float = 1) -> None:
    counts[key] = counts.get(key, 0) + amount


def _moments(split: dict[str, list[float]], name: str, value: float) -> None:
    """n, sum, sum of squares, min, max of one feature."""
    found = split.setdefault(name, [0, 0.0, 0.0, value, value])
    found[0] += 1
    found[1] += value
    found[2] += value * value
    found[3], found[4] = min(found[3], value), max(found[4], value)


def accumulate(rows: Iterable[tuple[str, str, str, str]], kind: str) -> dict[str, Any]:
    """(split, label, source, profile JSON) rows of accepted records -> their accumulator."""
    acc, feats, sums = empty(), features(kind), _channel_sums(kind)
    for split, label, source, text in rows:
        profile = json.loads(text)
        _add(acc["rows"], split)
        _add(acc["labels"].setdefault(split, {}), label)
        _add(acc["sources"], source.rsplit("/", 1)[0] if "/" in source else "")
        hist = acc["hist"].setdefault(split, {})
        by_label = acc["by_label"].setdefault(label, {})
        for name, feature in feats.items():
            if profile.get(name) is None:
                continue
            if feature.kind == "numeric" and not math.isfinite(profile[name]):
                continue  # a NaN confidence (a broken model) has no bin
            key = feature.bin(profile[name])
            _add(hist.setdefault(name, {}), key)
            _add(by_label.setdefault(name, {}), key)
            if feature.kind == "numeric":
                _moments(acc["moments"].setdefault(split, {}), name, float(profile[name]))
        for name in sums:
            if name in profile:
                _add(acc["sums"].setdefault(split, {}), name, float(profile[name]))
    return acc


def _merge_counts(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Nested counts added key by key (a dict at any depth holds more counts)."""
    merged = dict(a)
    for key, value in b.items():
        if isinstance(value, Mapping):
            merged[key] = _merge_counts(merged.get(key, {}), value)
        else:
            merged[key] = merged.get(key, 0) + value
    return merged


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two accumulators as one (associative and commutative, as Spark's reduce needs)."""
    merged = {key: _merge_counts(a[key], b[key]) for key in ("rows", "labels", "hist",
                                                              "by_label", "sums", "sources")}
    moments: dict[str, dict[str, list[float]]] = {}
    for split in {*a["moments"], *b["moments"]}:
        left, right = a["moments"].get(split, {}), b["moments"].get(split, {})
        moments[split] = {name: _merge_moments(left.get(name), right.get(name))
                          for name in {*left, *right}}
    return {**merged, "moments": moments}


def _merge_moments(a: list[float] | None, b: list[float] | None) -> list[float]:
    if a is None or b is None:
        return list(a or b or [])
    return [a[0] + b[0], a[1] + b[1], a[2] + b[2], min(a[3], b[3]), max(a[4], b[4])]


ALL = "all"  # the key of every split together


def _with_all(acc: dict[str, Any]) -> dict[str, Any]:
    """The accumulator with one more split, ``all``: every split's records together."""
    done = dict(acc)
    for key in ("labels", "hist", "sums"):
        total: dict[str, Any] = {}
        for split in acc[key].values():
            total = _merge_counts(total, split)
        done[key] = {**acc[key], ALL: total}
    moments: dict[str, list[float]] = {}
    for split in acc["moments"].values():
        moments = {name: _merge_moments(moments.get(name), split.get(name))
                   for name in {*moments, *split}}
    done["moments"] = {**acc["moments"], ALL: moments}
    done["rows"] = {**acc["rows"], ALL: sum(acc["rows"].values())}
    return done


def _summary(moments: list[float] | None) -> dict[str, float | None]:
    if not moments:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    n, total, squares, low, high = moments
    mean = total / n
    return {"n": n, "mean": mean, "std": math.sqrt(max(squares / n - mean * mean, 0.0)),
            "min": low, "max": high}


def _feature_document(feature: Feature, acc: dict[str, Any]) -> dict[str, Any]:
    splits = {}
    for split in acc["rows"]:
        counts = dict(sorted(acc["hist"].get(split, {}).get(feature.name, {}).items()))
        splits[split] = {"counts": counts}
        if feature.kind == "numeric":
            splits[split].update(_summary(acc["moments"].get(split, {}).get(feature.name)))
    edges = [e if math.isfinite(e) else None for e in feature.edges] or None
    labels = {label: dict(sorted(found[feature.name].items()))
              for label, found in sorted(acc["by_label"].items()) if feature.name in found}
    return {"kind": feature.kind, "doc": feature.doc, "judged": feature.judged, "edges": edges,
            "splits": splits, "labels": labels}


def _channels(acc: dict[str, Any], kind: str) -> dict[str, dict[str, dict[str, float]]]:
    """Per split, each channel's mean and standard deviation over all stored pixels (every
    image has the same size, so per-image means average to the pixel mean)."""
    found: dict[str, dict[str, dict[str, float]]] = {}
    for split, rows in acc["rows"].items():
        sums = acc["sums"].get(split, {})
        for channel in (c for cs in CHANNELS.values() for c in cs):
            if f"channel_{channel}_mean" in sums:
                mean = sums[f"channel_{channel}_mean"] / rows
                square = sums[f"channel_{channel}_square"] / rows
                found.setdefault(split, {})[channel] = {
                    "mean": mean, "std": math.sqrt(max(square - mean * mean, 0.0))}
    return found if kind.startswith("images") else {}


def relative_path(source: str, root: str) -> str | None:
    """A record's source (a URI as Spark spells it: ``file:/x``, percent-quoted for Parquet)
    relative to the input ``root`` (``file:///x``, ``s3://b/x``), as a retrain's snapshot
    records it; None when it is not under ``root``."""
    found, base = urlparse(source), urlparse(root)
    path, prefix = unquote(found.path), unquote(base.path).rstrip("/") + "/"
    if found.netloc != base.netloc or not path.startswith(prefix):
        return None
    return path[len(prefix):]


def in_increment(source: str, root: str, increment: frozenset[str]) -> bool:
    """Whether a record came from one of ``increment``'s files (paths relative to ``root``)."""
    return relative_path(source, root) in increment


def build(acc: dict[str, Any], kind: str, quarantine: Mapping[str, int],
          top_tokens: Iterable[tuple[str, int]] = (),
          increment: dict[str, Any] | None = None) -> Statistics:
    """The statistics document of a version from its records' accumulator; ``increment``:
    the accumulator of the new and changed inputs alone (a retrain's version)."""
    extra = {} if increment is None else {"increment": build(increment, kind, {}).document}
    acc = _with_all(acc)
    return Statistics(extra | {
        "format_version": FORMAT_VERSION, "kind": kind, "rows": acc["rows"],
        "labels": {split: dict(sorted(c.items())) for split, c in acc["labels"].items()},
        "quarantine": dict(sorted(quarantine.items())),
        "sources": {redact(folder): n for folder, n in sorted(acc["sources"].items())},
        "features": {f.name: _feature_document(f, acc) for f in FEATURES[kind]},
        "channels": _channels(acc, kind),
        "top_tokens": [list(pair) for pair in top_tokens],
    })


class StatisticsError(PipelineError, ValueError):
    """A version has no statistics (written before they existed) or they are unreadable."""


@dataclass(frozen=True)
class Statistics:
    """A version's statistics document, and the views validation compares (every split
    together unless a split is named)."""

    document: dict[str, Any]

    @property
    def kind(self) -> str:
        """``images`` or ``text`` (``... predictions`` for a batch of predictions)."""
        return self.document["kind"]

    @property
    def rows(self) -> int:
        """Accepted rows, every split together."""
        return self.document["rows"].get(ALL, 0)

    def labels(self, split: str = ALL) -> dict[str, int]:
        """Rows per label."""
        return dict(self.document["labels"].get(split, {}))

    def feature(self, name: str, split: str = ALL) -> dict[str, Any]:
        """The counts (and for numbers, n/mean/std/min/max) of one feature."""
        return self.document["features"][name]["splits"].get(split, {"counts": {}})

    def increment(self) -> Statistics | None:
        """The statistics of the new and changed inputs alone, when a retrain built this."""
        found = self.document.get("increment")
        return Statistics(found) if found and found["rows"].get(ALL) else None

    def by_label(self, name: str) -> dict[str, dict[str, int]]:
        """A feature's counts per label (every split together)."""
        return self.document["features"][name].get("labels", {})

    def definition(self, name: str) -> dict[str, Any]:
        """A statistic's kind, description, bin edges and whether drift judges it."""
        return {k: v for k, v in self.document["features"][name].items()
                if k not in ("splits", "labels")}

    def summary(self) -> dict[str, Any]:
        """What the manifest says of the statistics: the file, and each number's mean."""
        means = {name: round(self.feature(name)["mean"], 6)
                 for name, f in self.document["features"].items()
                 if f["kind"] == "numeric" and self.feature(name).get("mean") is not None}
        return {"file": STATISTICS_NAME, "means": means}

    def to_json(self) -> str:
        """The document as ``statistics.json`` holds it."""
        return json.dumps(self.document, indent=1, sort_keys=True)


def read_statistics(version_uri: str, name: str = STATISTICS_NAME) -> Statistics:
    """The statistics stored in a committed version (or beside predictions: ``name``); a clear
    error for one without."""
    where = storage.join(version_uri, name)
    try:
        document = json.loads(storage.read_text(where))
    except FileNotFoundError:
        raise StatisticsError(
            f"{version_uri} has no {name}: it was written before statistics were recorded; "
            "run the job again (same input, same settings) to compare it") from None
    except ValueError as exc:
        raise StatisticsError(f"{where} is not valid JSON: {exc}") from None
    if document.get("format_version", 0) > FORMAT_VERSION:
        raise StatisticsError(f"{where} has format_version {document['format_version']}; "
                              "upgrade the pipeline to read it")
    return Statistics(document)


def write_validation(version_uri: str, outcome: Mapping[str, Any], report_html: str) -> None:
    """Record beside a committed version how its validation ended, and the report (a refused
    version is not unfinished work: the next retrain says so instead of training it)."""
    storage.write_text(storage.join(version_uri, VALIDATION_REPORT), report_html)
    storage.write_text(storage.join(version_uri, VALIDATION_NAME),
                       json.dumps(outcome, indent=1, sort_keys=True))


def read_validation(version_uri: str) -> dict[str, Any] | None:
    """The validation recorded beside a version, or None (never validated by a retrain)."""
    try:
        return json.loads(storage.read_text(storage.join(version_uri, VALIDATION_NAME)))
    except (OSError, ValueError):  # absent (FileNotFoundError), unreadable: no record
        return None
