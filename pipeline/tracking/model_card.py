"""A model card per registered version: Markdown and HTML artifacts of the training run
(``model_card/v<version>.md|html``), linked from the version's description. Written when the
version is registered and again when it is judged, with its evaluation and blessing.

The training side (data, configuration, best epoch, source) is read from the training run; the
judgement comes in as plain values (``Judgement``) so this adapter imports no stage.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.datasets.manifest import Manifest
from pipeline.errors import first_line
from pipeline.tracking import keys
from pipeline.tracking.models import training_inputs
from pipeline.tracking.registry import ModelRef
from pipeline.tracking.reports import class_scores
from pipeline.tracking.tracker import Tracker

log = logging.getLogger(__name__)
CARD_FOLDER = "model_card"
WORST_SHOWN = 15  # slices listed, worst first


@dataclass(frozen=True)
class Judgement:
    """What a promotion found: the split's numbers, slices, confusion and the blessing."""

    decision: str  # promoted | rejected
    reason: str
    split: str
    numbers: Mapping[str, float]  # accuracy, loss, macro_f1, roc_auc, ece, rows
    slices: Mapping[str, Mapping[str, dict]] = field(default_factory=dict)
    min_rows: int = 1  # slices smaller than this are not ranked (registry.slice_min_rows)
    confusion: np.ndarray | None = None
    checks: Sequence[tuple[str, bool, str]] = ()  # (name, passed, detail)
    robustness: Mapping[str, Sequence[float]] = field(default_factory=dict)  # accuracy by severity
    clean: float | None = None  # the robustness sample's accuracy uncorrupted


def _robustness(judged: Judgement) -> list[str]:
    if not judged.robustness:
        return ["## Robustness", "Not measured for this version (`evaluation.robustness`)."]
    rows = [(name, *(f"{a:.4f}" for a in accuracies))
            for name, accuracies in judged.robustness.items()]
    return ["## Robustness",
            f"Accuracy under corruption at severities 1-3 (clean: {judged.clean:.4f}; the "
            f"figure is `{keys.ROBUSTNESS_FIGURE}` in the evaluation run):",
            _table(["corruption", "1", "2", "3"], rows)]


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def _training(tracker: Tracker, run_id: str, manifest: Manifest) -> list[str]:
    run = tracker.client.get_run(run_id)
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    labels = ", ".join(manifest.labels[:20]) + (" ..." if manifest.num_classes > 20 else "")
    split_rows = [(name, info.rows) for name, info in manifest.splits.items()]
    own_model = f"train.{params.get('model')}."  # the settings of the other models are noise
    config = [(k, v) for k, v in sorted(params.items())
              if (k.startswith("train.") and not k.startswith(("train.image_cnn", "train.text")))
              or k.startswith(own_model)]
    return [
        "## Intended use",
        f"Classifies raw {manifest.kind} into {manifest.num_classes} classes ({labels}), "
        "prepared exactly as ingest prepared the training data. Inputs unlike that data "
        "(other sources, classes or languages) are outside its scope.",
        "## Training data",
        f"Dataset version `{tags.get(keys.DATASET_URL, '?')}`, fingerprint "
        f"`{manifest.fingerprint[:16]}`; {manifest.quarantined} inputs quarantined.",
        _table(["split", "rows"], split_rows),
        "## Training",
        f"Run `{run_id}`, model `{params.get('model', '?')}`, epoch kept "
        f"{tags.get(keys.BEST_EPOCH, 'last')}: validation loss "
        f"{metrics.get('best_val_loss', metrics.get('val_loss', float('nan'))):.4f}, accuracy "
        f"{metrics.get('best_val_accuracy', metrics.get('val_accuracy', float('nan'))):.4f}.",
        _table(["setting", "value"], config),
        "## Where it came from",
        f"`{tags.get(keys.SOURCE_NAME, '?')}`; commit "
        f"`{tags.get(keys.SOURCE_COMMIT, 'none (no checkout)')}`"
        f"{' with uncommitted changes' if tags.get(keys.SOURCE_DIRTY) == 'true' else ''}; "
        f"package {tags.get(keys.CODE_VERSION, '?')}.",
    ]


def _judgement(judged: Judgement | None, labels: Sequence[str]) -> list[str]:
    if judged is None:
        return ["## Evaluation", "Not evaluated yet: `pipeline promote` evaluates and judges it."]
    worst = sorted((row["accuracy"], kind, value, row["rows"])
                   for kind, values in judged.slices.items() for value, row in values.items()
                   if row["rows"] >= judged.min_rows)[:WORST_SHOWN]
    lines = [f"## Evaluation ({judged.split} split)",
             _table(["metric", "value"], [(k, f"{v:.4f}" if isinstance(v, float) else v)
                                          for k, v in judged.numbers.items()]),
             f"Slices of at least {judged.min_rows} rows, worst first:",
             _table(["slice", "rows", "accuracy"],
                    [(f"{kind}={value}", rows, f"{acc:.4f}") for acc, kind, value, rows in worst]),
             *_robustness(judged), "## Known limits"]
    if judged.confusion is not None:
        _, _, f1 = class_scores(judged.confusion)
        present = np.flatnonzero(judged.confusion.sum(axis=1))  # classes the split holds
        weakest = [f"{labels[i]} (F1 {f1[i]:.3f})" for i in present[np.argsort(f1[present])][:3]]
        lines.append(f"Weakest classes: {', '.join(weakest)}.")
    if worst:
        lines.append(f"Weakest slice: {worst[0][1]}={worst[0][2]} (accuracy {worst[0][0]:.4f}).")
    lines += ["## Blessing", f"**{judged.decision}**: {judged.reason}",
              _table(["check", "outcome", "detail"],
                     [(n, "passed" if ok else "failed", d) for n, ok, d in judged.checks])]
    return lines


def write_model_card(tracker: Tracker, ref: ModelRef, run_id: str,
                     judged: Judgement | None = None) -> str | None:
    """Render and log the card of ``ref`` (trained by ``run_id``); returns its artifact path,
    or None when it could not be written (logged: a card never decides a training or a
    promotion)."""
    try:
        import markdown

        manifest, _ = training_inputs(tracker, run_id)
        text = "\n\n".join([f"# Model card: {ref}", *_training(tracker, run_id, manifest),
                            *_judgement(judged, manifest.labels)]) + "\n"
        path = f"{CARD_FOLDER}/v{ref.version}"
        tracker.client.log_text(run_id, text, f"{path}.md")
        html = markdown.markdown(text, extensions=["tables"])
        tracker.client.log_text(run_id, f"<!doctype html><meta charset=utf-8><title>{ref}"
                                        f"</title>\n{html}\n", f"{path}.html")
    except Exception as exc:  # the artifact store, a damaged run: say so, go on
        log.warning("no model card for %s: %s", ref, first_line(exc))
        return None
    return f"{path}.md"


def card_link(run_id: str, path: str | None) -> str:
    """The sentence a version's description ends with ("" without a card)."""
    return f"Model card: runs:/{run_id}/{path} (and .html)." if path else ""
