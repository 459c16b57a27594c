"""Comparing training runs: the best N by a metric as a table, and the MLflow UI page that
shows them side by side (``pipeline ui`` serves that UI: ``tracking/ui.py``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib import parse

from pipeline.errors import PipelineError
from pipeline.tracking import keys
from pipeline.tracking.runs import quote
from pipeline.tracking.tracker import Tracker

COLUMNS = ("train.learning_rate", "train.batch_size", "train.epochs", "train.workers")


class NoRunsError(PipelineError, LookupError):
    """Nothing to compare."""


@dataclass(frozen=True)
class RunRow:
    run_id: str
    name: str
    status: str
    dataset: str
    params: dict[str, str]
    metrics: dict[str, float]


def best_runs(tracker: Tracker, metric: str, top: int, experiment: str | None = None
              ) -> tuple[str, list[RunRow]]:
    """(experiment id, the ``top`` training runs best by ``metric``), best first."""
    client = tracker.client
    name = experiment or tracker.experiment
    found = client.get_experiment_by_name(name)
    if found is None:
        raise NoRunsError(f"no experiment '{name}' in {tracker.uri}")
    order = "ASC" if keys.lower_is_better(metric) else "DESC"
    runs = client.search_runs([found.experiment_id],
                              filter_string=f"tags.`{keys.JOB_TAG}` = {quote('train')}",
                              order_by=[f"metrics.`{metric}` {order}"], max_results=top)
    rows = [RunRow(run_id=r.info.run_id, name=r.info.run_name or "", status=r.info.status,
                   dataset=r.data.tags.get(keys.DATASET_FINGERPRINT, "")[:12],
                   params={k: r.data.params.get(k, "") for k in ("model", *COLUMNS)},
                   metrics=dict(r.data.metrics))
            for r in runs if metric in r.data.metrics]
    if not rows:
        raise NoRunsError(f"no training run in experiment '{name}' has the metric '{metric}'")
    return found.experiment_id, rows


def compare_url(ui_url: str, experiment_id: str, run_ids: list[str]) -> str:
    """The MLflow UI's run-comparison page for these runs."""
    runs = parse.quote(json.dumps(run_ids, separators=(",", ":")))
    experiments = parse.quote(json.dumps([experiment_id], separators=(",", ":")))
    return f"{ui_url}/#/compare-runs?runs={runs}&experiments={experiments}"


def format_table(rows: list[RunRow], metric: str) -> str:
    """One line per run: id, name, dataset, key parameters, the metric and validation metrics."""
    shown = [metric, *(m for m in ("val_accuracy", "val_loss") if m != metric)]
    header = ["run", "name", "status", "dataset", "model", *(c.split(".")[-1] for c in COLUMNS),
              *shown]
    lines = [[r.run_id[:8], r.name, r.status, r.dataset, *r.params.values(),
              *(f"{r.metrics[m]:.4f}" if m in r.metrics else "-" for m in shown)]
             for r in rows]
    widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True))
                     for row in [header, *lines])
