"""The retrain's data check: the new version against the data the champion learned from (and
the expectations file, when configured), before anything is trained on it."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from pipeline.config import Config
from pipeline.datasets.statistics import Statistics, StatisticsError, write_validation
from pipeline.tracking import keys, registry, runs
from pipeline.tracking.registry import CHAMPION
from pipeline.tracking.tracker import Tracker
from pipeline.validation import report
from pipeline.validation.validate import Validation, validate, version_statistics

log = logging.getLogger(__name__)


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
    except StatisticsError as exc:
        log.warning("not comparing with the champion's data: %s", exc)
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
    outcome = validation.to_dict()
    with tempfile.TemporaryDirectory(prefix="validation-") as folder:
        path = report.write_report(validation, str(Path(folder) / "report.html"))
        runs.log_validation(tracker, parent, outcome, path)
        write_validation(version_url, outcome, Path(path).read_text(encoding="utf-8"))
    for line in report.table(validation):
        log.info("validation: %s", line)
    return validation
