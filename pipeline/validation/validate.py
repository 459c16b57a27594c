"""``pipeline validate``: a version's statistics against a reference version's (drift, labels
come and gone) and against expectations; the findings decide the exit status."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.config import ValidationConfig
from pipeline.datasets.manifest import open_version
from pipeline.datasets.statistics import PREDICTION_STATISTICS, Statistics, read_statistics
from pipeline.errors import PipelineError, UsageError
from pipeline.validation import expectations as expect
from pipeline.validation.drift import homogeneity_pvalue, js_distance
from pipeline.validation.findings import Finding, Severity, label_sets, named, status

LABEL = "label"
INCREMENT = " (new files)"  # the suffix of a statistic of a retrain's new and changed inputs


class ValidationFailedError(PipelineError):
    """A version broke an expectation or drifted past an error threshold: exit 4 (nothing
    was trained or promoted on it)."""

    exit_code = 4


@dataclass(frozen=True)
class Comparison:
    """One statistic of the version against the reference's: distance and its p-value."""

    feature: str
    distance: float
    pvalue: float
    severity: Severity | None
    # what was compared with, drawn by the report (a reference at a class mix, the model's
    # validation predictions): not in the JSON outcome
    reference_counts: dict[str, float] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Validation:
    """The outcome: ``status`` is ok, warning or error."""

    data: str
    reference: str | None
    expectations: str | None
    findings: list[Finding]
    comparisons: list[Comparison] = field(default_factory=list)
    statistics: tuple[Statistics, Statistics | None] | None = field(default=None, repr=False)

    @property
    def status(self) -> str:
        """The worst severity found: ok, warning or error."""
        return status(self.findings)

    def named(self, severity: Severity = "error") -> list[str]:
        """The features with a finding of ``severity``, each once, in order."""
        return named([f.to_dict() for f in self.findings], severity)

    def to_dict(self) -> dict[str, Any]:
        """The outcome as ``--json`` prints it and ``validation.json`` stores it."""
        return {"data": self.data, "reference": self.reference,
                "expectations": self.expectations, "status": self.status,
                "errors": self.named("error"), "warnings": self.named("warning"),
                "findings": [f.to_dict() for f in self.findings],
                "comparisons": [{k: v for k, v in asdict(c).items() if k != "reference_counts"}
                                for c in self.comparisons]}


def _severity(distance: float, pvalue: float, cfg: ValidationConfig) -> Severity | None:
    """Error or warning past its threshold, and only when the chi-squared test says the
    difference is more than sampling noise (a small batch's histogram is ragged)."""
    if pvalue >= cfg.max_pvalue:
        return None
    if distance >= cfg.drift_error:
        return "error"
    return "warning" if distance >= cfg.drift_warning else None


def _histograms(stats: Statistics, with_labels: bool) -> dict[str, dict[str, int]]:
    """The judged histograms of a version (and its labels), every split together."""
    found = {LABEL: stats.labels()} if with_labels else {}
    for name, definition in stats.document["features"].items():
        if definition["judged"]:
            found[name] = stats.feature(name)["counts"]
    return found


def _same_mix(reference: Statistics, labels: dict[str, int]) -> dict[str, dict[str, float]]:
    """The reference's histograms as they would be with ``labels``' class mix (each label's
    histogram weighted by its share there), at the size of the reference's rows of those
    labels: what new files of those classes should look like."""
    theirs = reference.labels()
    known = {label: n for label, n in labels.items() if theirs.get(label)}
    total, size = sum(known.values()), sum(theirs[label] for label in known)
    mixed: dict[str, dict[str, float]] = {}
    for name, definition in reference.document["features"].items():
        if not definition["judged"] or not total:
            continue
        per_label, found = reference.by_label(name), {}
        for label, n in known.items():
            for key, count in per_label.get(label, {}).items():
                found[key] = found.get(key, 0.0) + n / total * count / theirs[label] * size
        mixed[name] = found
    return mixed


def drift(new: Statistics, reference: Statistics, cfg: ValidationConfig, part: str = ""
          ) -> tuple[list[Comparison], list[Finding]]:
    """Every judged statistic compared; findings for labels come or gone and for drift.
    ``part``: the increment's suffix (`` (new files)``): new files may well arrive for some
    classes only, so their labels are not judged and each statistic is compared with the
    reference's at the new files' class mix."""
    theirs = (_same_mix(reference, new.labels()) if part
              else _histograms(reference, with_labels=True))
    comparisons, findings = _compare(_histograms(new, with_labels=not part), theirs, cfg, part)
    sets = [] if part else label_sets(set(new.labels()), set(reference.labels()), "reference")
    return comparisons, sets + findings


def _compare(ours: dict[str, dict[str, float]], theirs: dict[str, dict[str, float]],
             cfg: ValidationConfig, part: str) -> tuple[list[Comparison], list[Finding]]:
    """Each histogram both sides have, compared: a drift finding past its threshold."""
    comparisons, findings = [], []
    for name, counts in ours.items():
        if not counts or not theirs.get(name):
            continue
        distance = js_distance(counts, theirs[name])
        pvalue = homogeneity_pvalue(counts, theirs[name])
        severity = _severity(distance, pvalue, cfg)
        comparisons.append(Comparison(name + part, round(distance, 6), pvalue, severity,
                                      dict(theirs[name])))
        if severity is not None:
            limit = cfg.drift_error if severity == "error" else cfg.drift_warning
            findings.append(Finding(name + part, "drift", severity, round(distance, 6), limit,
                                    f"Jensen-Shannon distance {distance:.3f} (p={pvalue:.1e})"))
    return comparisons, findings


def prediction_drift(batch: Statistics, training: Statistics,
                     predicted_val: dict[str, int] | None, cfg: ValidationConfig
                     ) -> tuple[list[Comparison], list[Finding]]:
    """A batch of predictions against the model's training data: each input statistic, and
    the predicted labels against the labels the model predicted on its validation split (or,
    without that record, the training data's labels). Labels are not judged as sets: a small
    batch may well predict some classes only."""
    theirs = _histograms(training, with_labels=True)
    if predicted_val:
        theirs[LABEL] = predicted_val
    return _compare(_histograms(batch, with_labels=True), theirs, cfg, "")


def version_statistics(dataset_url: str) -> Statistics:
    """The statistics of a committed version (or the newest in a folder of versions)."""
    return read_statistics(open_version(dataset_url)[0])


def validate(new: Statistics, reference: Statistics | None, expected: str | None,
             cfg: ValidationConfig, names: tuple[str, str | None]) -> Validation:
    """``new`` against a reference and/or an expectations file; ``names`` say where each
    statistics came from (for the report)."""
    if reference is not None and reference.kind != new.kind:
        raise UsageError(f"cannot compare {names[0]} ({new.kind}) with {names[1]} "
                         f"({reference.kind})")
    comparisons, findings = drift(new, reference, cfg) if reference else ([], [])
    increment = new.increment()
    if reference and increment is not None:  # a bad batch is diluted in a cumulative version
        more = drift(increment, reference, cfg, INCREMENT)
        comparisons, findings = comparisons + more[0], findings + more[1]
    if expected:
        findings += expect.check(new, expect.read(expected))
    return Validation(names[0], names[1], expected, findings, comparisons, (new, reference))


def check(validation: Validation) -> None:
    """Raise ``ValidationFailedError`` naming the features when a finding is an error."""
    if validation.status == "error":
        raise ValidationFailedError(f"{validation.data} failed validation: "
                                    f"{', '.join(validation.named())}")


def validate_predictions(output_uri: str, model_uri: str, training: tuple[str, dict | None],
                         cfg: ValidationConfig) -> Validation:
    """A batch ``pipeline predict`` wrote, against the data of the model that predicted it;
    ``training``: that data's URI and the model's validation predictions per label."""
    batch = read_statistics(output_uri, PREDICTION_STATISTICS)
    reference = version_statistics(training[0])
    comparisons, findings = prediction_drift(batch, reference, training[1], cfg)
    if batch.rows == 0:
        findings.append(Finding(LABEL, "no_prediction", "error", 0, "> 0",
                                "no input of the batch was predicted: every one was refused"))
    return Validation(f"predictions {output_uri}", f"{model_uri} (trained on {training[0]})",
                      None, findings, comparisons, (batch, reference))


def validate_versions(data_url: str, reference_url: str | None, expected: str | None,
                      cfg: ValidationConfig) -> Validation:
    """Two committed versions (or a version and expectations) compared."""
    reference = version_statistics(reference_url) if reference_url else None
    return validate(version_statistics(data_url), reference, expected, cfg,
                    (data_url, reference_url))
