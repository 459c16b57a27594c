"""``pipeline explain``: what a model looks at in raw files outside any dataset version. Each
file is prepared as ingest prepared the model's dataset, predicted, and explained as an
evaluation explains its chosen rows; the maps (or the token page) and ``predictions.json``,
one entry per file found, are written to the output folder."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np

from pipeline import storage
from pipeline.config import Config
from pipeline.datasets.manifest import Manifest
from pipeline.datasets.reasons import Reason
from pipeline.errors import InputError
from pipeline.evaluation.explained import explain_rows
from pipeline.ingest.discover import placement_problem, size_problem
from pipeline.ingest.model_input import preparer
from pipeline.ingest.rejection import Rejected
from pipeline.spark.listing import escapes_root
from pipeline.tracking import registry
from pipeline.tracking.explanation_report import explanation_files
from pipeline.tracking.models import (
    checked_predict,
    keras_predict,
    load_keras_model,
    model_run,
    training_inputs,
)
from pipeline.tracking.tracker import Tracker

log = logging.getLogger(__name__)
PREDICTIONS_NAME = "predictions.json"


@dataclass(frozen=True)
class FilesExplained:
    output_uri: str
    inputs: int  # files found under the input
    explained: int
    quarantined: dict[str, int]  # reason -> files not explained
    written: list[str]  # file names in the output folder


def _outcome(uri: str, size: int, root: str, max_bytes: int, prepare) -> dict:
    """One file's entry: its model input (dropped before writing), or why ingest would have
    quarantined it."""
    problem = (placement_problem(uri, root, escapes_root(uri, root))
               or size_problem(size, max_bytes))
    try:
        if problem is not None:
            raise Rejected(*problem)
        return {"source": uri, "input": prepare(storage.read_bytes(uri))[0]}
    except Rejected as rejected:
        return {"source": uri, "reason": str(rejected.reason), "detail": rejected.detail}
    except OSError as exc:
        return {"source": uri, "reason": str(Reason.UNREADABLE), "detail": str(exc)}
    except Exception as exc:  # a decoder bug sets one file aside, as in pipeline predict
        return {"source": uri, "reason": str(Reason.UNEXPECTED_ERROR),
                "detail": f"{type(exc).__name__}: {exc}"}


def _found(input_uri: str, max_files: int) -> list[tuple[str, int]]:
    found = storage.list_files(input_uri)
    if not found:
        raise InputError(f"{input_uri}: no file to explain")
    if len(found) > max_files:
        raise InputError(f"{input_uri} holds {len(found)} files, over --max-files {max_files}: "
                         "each gets a row in the figures; pass fewer or raise --max-files")
    return found


def _explained(model, manifest: Manifest, vocab: str | None, ready: list[dict],
               input_uri: str) -> dict[str, bytes]:
    """The prepared files' predictions, added to their entries (inputs dropped), and their
    explanations as files by name."""
    predict = keras_predict(model)
    inputs = np.stack([entry.pop("input") for entry in ready])
    probs = checked_predict(predict, inputs, manifest.num_classes, input_uri)
    for entry, p in zip(ready, probs, strict=True):
        entry |= {"label": manifest.labels[int(p.argmax())], "confidence": float(p.max()),
                  "probabilities": dict(zip(manifest.labels, map(float, p), strict=True))}
    titles = [f"{e['source'].rsplit('/', 1)[-1]}: {e['label']} ({e['confidence']:.2f})"
              for e in ready]
    return explanation_files(explain_rows(model, predict, manifest, inputs, probs, titles,
                                          vocab))


def explain_files(cfg: Config, model_uri: str, input_path: str, output: str,
                  max_files: int = 64) -> FilesExplained:
    """Explain every file at or below ``input_path`` (a file or a folder) with the model at
    ``model_uri``; write the explanations and ``predictions.json`` to ``output``."""
    input_uri, output_uri = storage.to_uri(input_path), storage.to_uri(output)
    found = _found(input_uri, max_files)
    tracker = Tracker.from_config(cfg.mlflow)
    ref = registry.resolve(tracker, model_uri)
    resolved = ref.uri if ref is not None else model_uri
    manifest, vocab = training_inputs(tracker, model_run(tracker, resolved))
    prepare = preparer(manifest.kind, manifest.config[manifest.kind], vocab)
    outcomes = [_outcome(uri, size, input_uri, cfg.ingest.max_file_bytes, prepare)
                for uri, size in found]
    ready = [o for o in outcomes if "input" in o]
    files = _explained(load_keras_model(tracker, resolved), manifest, vocab, ready,
                       input_uri) if ready else {}
    files[PREDICTIONS_NAME] = json.dumps(outcomes, indent=2).encode("utf-8")
    if not storage.is_object_store(output_uri):  # S3 has no folders
        storage.make_dirs(output_uri)
    for name, content in files.items():
        storage.write_bytes(storage.join(output_uri, name), content)
    quarantined = dict(Counter(o["reason"] for o in outcomes if "reason" in o))
    log.info("explained %d of %d files with %s into %s%s", len(ready), len(outcomes),
             ref or model_uri, output_uri, f" (not explained: {quarantined})" if quarantined
             else "")
    return FilesExplained(output_uri, len(outcomes), len(ready), quarantined, sorted(files))
