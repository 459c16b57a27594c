"""The retrain's data check: the new version against the data the champion learned from (and
the expectations file, when configured), before anything is trained on it."""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path

from pipeline import storage
from pipeline.config import Config
from pipeline.datasets.manifest import NotADatasetError, committed_versions
from pipeline.datasets.statistics import (
    VALIDATION_REPORT,
    Statistics,
    StatisticsError,
    read_validation,
    write_validation,
)
from pipeline.errors import first_line
from pipeline.retrain import inputs
from pipeline.tracking import keys, registry, runs
from pipeline.tracking.registry import CHAMPION
from pipeline.tracking.tracker import Tracker
from pipeline.validation import report
from pipeline.validation.validate import (
    Validation,
    ValidationFailedError,
    validate,
    version_statistics,
)

log = logging.getLogger(__name__)


def increment(output_uri: str, snapshot: inputs.Snapshot, changes: inputs.Changes
              ) -> frozenset[str]:
    """The files the next version's "new files" check covers: new or changed since the newest
    version validation did not refuse (a refused batch stays new until a version holding it
    passes; adding one good file must not dilute it into the body unseen)."""
    versions = committed_versions(output_uri)
    for name in reversed(versions):
        outcome = read_validation(storage.join(output_uri, name)) or {}
        if outcome.get("status") != "error":
            break
    else:
        return frozenset(snapshot)  # none passed yet: every file is new
    if name == versions[-1]:
        return frozenset(changes.new + changes.changed)
    recorded = inputs.read_snapshot(storage.join(output_uri, name))
    since = inputs.compare(recorded[1] if recorded else None, snapshot)
    return frozenset(since.new + since.changed)


def settings(cfg: Config, reference_url: str | None) -> str:
    """A digest of what a validation judged with: thresholds, the expectations file's text, the
    reference. A refusal stands only while these are the same."""
    expected = cfg.validation.expectations
    text = Path(expected).read_text(encoding="utf-8") if expected and Path(expected).is_file() \
        else ""
    body = json.dumps([cfg.validation.model_dump(), text, reference_url], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def check_not_refused(cfg: Config, tracker: Tracker, name: str, version_url: str) -> None:
    """A version validation refused, under the settings still in force, stays refused while
    its raw files stay as they are: exit 4 again (a scheduler keeps the alarm up), training
    nothing. Changed settings (thresholds, expectations, a new champion) judge it again."""
    refused = read_validation(version_url) or {}
    if (refused.get("status") != "error" or cfg.validation.on_error != "stop"
            or refused.get("settings") != settings(cfg, _champion_data(tracker, name))):
        return
    raise ValidationFailedError(
        f"{version_url} was refused by validation (errors in "
        f"{', '.join(refused.get('errors', []))}) and no raw file changed since: fix or remove "
        "the bad files, or set validation.on_error=warn to train on it; the report: "
        f"{storage.join(version_url, VALIDATION_REPORT)}")


def _champion_data(tracker: Tracker, name: str) -> str | None:
    """Where the champion's training data is (its version's ``dataset.url``), or None."""
    champion = registry.by_alias(tracker, name, CHAMPION)
    if champion is None:
        return None
    return registry.version_tags(tracker, champion).get(keys.DATASET_URL)


def _reference(url: str | None) -> Statistics | None:
    """The reference's statistics; None (said in the log) for a version without any."""
    if url is None:
        return None
    try:
        return version_statistics(url)
    except (StatisticsError, NotADatasetError, OSError) as exc:  # gone, moved, or too old
        log.warning("not comparing with the champion's data: %s", first_line(exc))
        return None


def check_version(cfg: Config, tracker: Tracker, parent: str, name: str,
                  version_url: str) -> Validation | None:
    """Validate ``version_url``; the outcome goes on the retrain run and beside the version.
    None when there is nothing to compare with (no champion yet, no expectations)."""
    expected = cfg.validation.expectations or None
    reference_url = _champion_data(tracker, name)
    reference = _reference(reference_url)
    if reference is None and expected is None:
        log.info("validation: no champion's data and no expectations to compare with yet")
        return None
    try:
        new = version_statistics(version_url)
    except StatisticsError as exc:
        log.warning("validation skipped: %s", exc)
        return None
    validation = validate(new, reference, expected, cfg.validation,
                          (version_url, reference_url if reference else None))
    outcome = validation.to_dict() | {"settings": settings(cfg, reference_url)}
    with tempfile.TemporaryDirectory(prefix="validation-") as folder:
        path = report.write_report(validation, str(Path(folder) / "report.html"))
        runs.log_validation(tracker, parent, outcome, path)
        write_validation(version_url, outcome, Path(path).read_text(encoding="utf-8"))
    for line in report.table(validation):
        log.info("validation: %s", line)
    return validation
