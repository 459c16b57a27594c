"""The infrastructure half of a blessing: the candidate, loaded in a fresh process as the
raw-input model and served over HTTP on 127.0.0.1 by MLflow's own server, answers a sample of
real test inputs with the labels the same model gives in this process; its latency per
request is measured. A model that cannot be served never becomes champion."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from dataclasses import dataclass

import numpy as np

from pipeline.config import ImagesConfig
from pipeline.datasets.features import encode_image
from pipeline.datasets.manifest import Manifest
from pipeline.datasets.reader import read_batches
from pipeline.errors import first_line
from pipeline.evaluation.blessing import Check
from pipeline.tracking.serving import LOOPBACK, load_raw_predictor, served
from pipeline.tracking.tracker import Tracker


@dataclass(frozen=True)
class ServingReport:
    check: Check
    numbers: dict[str, float]  # requests, agreement, p50_ms, p95_ms (what was measured)


def sample_inputs(dataset_url: str, manifest: Manifest, split: str, size: int
                  ) -> tuple[str, list]:
    """(column, values) of the first ``size`` rows of ``split`` as a client sends them: image
    rows as PNG files, text rows as their text."""
    if manifest.kind == "text":
        batch = next(read_batches(dataset_url, split, ("text",), size))
        return "text", [str(t) for t in batch["text"]]
    png = ImagesConfig(**{**manifest.config["images"], "encoding": "png"})
    batch = next(read_batches(dataset_url, split, ("image",), size))
    return "image", [encode_image(p, png) for p in batch["image"]]


def _ask(url: str, column: str, value) -> tuple[tuple[str | None, str | None], float]:
    """One request in MLflow's scoring protocol: ((label, error) answered, seconds taken)."""
    if isinstance(value, bytes):
        value = base64.b64encode(value).decode()
    body = json.dumps({"dataframe_split": {"columns": [column], "data": [[value]]}}).encode()
    request = urllib.request.Request(f"{url}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with LOOPBACK.open(request, timeout=60) as answer:
        row = json.loads(answer.read())["predictions"][0]
    return (row["label"], row["error"]), time.perf_counter() - started


def serving_check(tracker: Tracker, model_uri: str, dataset_url: str, manifest: Manifest,
                  split: str, size: int) -> ServingReport:
    """Serve ``model_uri`` and compare its answers with in-process predictions."""
    import pandas as pd

    try:
        column, values = sample_inputs(dataset_url, manifest, split, size)
        local = load_raw_predictor(tracker, model_uri)(pd.DataFrame({column: values}))
        expected = list(zip(local["label"], local["error"], strict=True))
        with served(tracker, model_uri) as url:
            answers = [_ask(url, column, value) for value in values]
    except Exception as exc:  # any failure to load, serve or answer fails the check, named
        return ServingReport(Check("serving", False, f"{model_uri} cannot be served: "
                                                     f"{first_line(exc)}"), {})
    served_rows, seconds = zip(*answers, strict=True)
    agreement = float(np.mean([a == e for a, e in zip(served_rows, expected, strict=True)]))
    refused = sorted({error for _, error in (*served_rows, *expected) if error})
    p50, p95 = (float(np.percentile(seconds, q)) * 1000 for q in (50, 95))
    numbers = {"requests": len(values), "agreement": agreement, "p50_ms": p50, "p95_ms": p95}
    detail = (f"{len(values)} {split} inputs over HTTP: {agreement:.0%} same labels as in "
              f"process, latency p50 {p50:.0f} ms, p95 {p95:.0f} ms")
    if refused:  # rows ingest accepted must be answered, not refused
        detail += f"; inputs refused: {', '.join(refused)}"
    return ServingReport(Check("serving", agreement == 1.0 and not refused, detail), numbers)
