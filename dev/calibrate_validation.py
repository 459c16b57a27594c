#!/usr/bin/env python3
"""Calibrate ``validation.drift_warning``/``drift_error`` on the project's real data sets.

Profiles every MNIST digit and Rotten Tomatoes snippet the way ingest does (the same per-record
functions, in plain Python), then prints, per scenario, the Jensen-Shannon distance and the
chi-squared p-value of each judged statistic against the reference: random halves and small
random batches (must pass), and real shifts (must fail). docs/VALIDATION.md holds the output.
Run: ``.venv/bin/python dev/calibrate_validation.py``.
"""

from __future__ import annotations

import random

import cv2
import numpy as np

from pipeline.config import load_config
from pipeline.datasets import statistics
from pipeline.datasets.profiles import oov_share, with_oov
from pipeline.ingest.image_records import clean_image_file
from pipeline.ingest.text_records import clean_text_document
from pipeline.ingest.tokens import OOV, Tokenizer, build_vocab, tokenize
from pipeline.samples.digits import load_digits
from pipeline.samples.reviews import load_reviews
from pipeline.validation.validate import drift

CFG = load_config(None, [])
RATIOS = CFG.split.model_dump()


def _png(pixels: np.ndarray) -> bytes:
    """An image as a user's PNG file holds it."""
    return cv2.imencode(".png", pixels)[1].tobytes()


def image_rows(images: np.ndarray, labels: np.ndarray) -> list[tuple[str, str, str, str]]:
    """Accumulator rows of images profiled as ingest profiles them."""
    rows = []
    for index, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        record = clean_image_file(f"raw/{label}/{index}.png", _png(pixels), str(label),
                                  CFG.images, RATIOS)
        rows.append(("train", str(label), record.path, record.profile))
    return rows


def text_rows(texts: list[str], labels: list[str], tokenizer: Tokenizer | None = None):
    """Accumulator rows of texts cleaned and profiled as ingest does, with the out-of-vocabulary
    share of ``tokenizer`` (None: a vocabulary built from these texts, as a first ingest)."""
    records = [clean_text_document(f"raw/{label}/{i}.txt", None, text.encode(), label,
                                   CFG.text, RATIOS)
               for i, (text, label) in enumerate(zip(texts, labels, strict=True))]
    accepted = [r for r in records if r.reason is None]
    if tokenizer is None:
        counts: dict[str, int] = {}
        for r in accepted:
            for token in tokenize(r.text, CFG.text.token_pattern):
                counts[token] = counts.get(token, 0) + 1
        vocab = build_vocab(counts, CFG.text.vocab_size, CFG.text.min_count)
        tokenizer = Tokenizer(CFG.text.token_pattern, {t: i for i, t in enumerate(vocab)},
                              CFG.text.max_len)
    rows = []
    for r in accepted:
        ids, length = tokenizer(r.text)
        rows.append(("train", r.label_name, r.source,
                     with_oov(r.profile, oov_share(ids, length, OOV))))
    return rows, tokenizer


def stats(rows, kind):
    """The statistics document of accumulator rows."""
    return statistics.build(statistics.accumulate(rows, kind), kind, {})


def report(name, new, reference):
    """One table row: the largest distance, the verdict, every statistic compared."""
    comparisons, findings = drift(new, reference, CFG.validation)
    worst = max(comparisons, key=lambda c: c.distance)
    shown = ", ".join(f"{c.feature} {c.distance:.3f} (p={c.pvalue:.0e})" for c in comparisons)
    verdict = max((f.severity for f in findings), default="ok", key=["warning", "error"].index
                  if findings else None)
    print(f"| {name} | {worst.feature} {worst.distance:.3f} | {verdict} | {shown} |")


def images() -> None:
    """The digits: halves, a small batch, and real shifts of the second half."""
    images_, labels = load_digits()
    order = np.random.default_rng(0).permutation(len(labels))
    half_a, half_b = order[: len(order) // 2], order[len(order) // 2:]
    ref = stats(image_rows(images_[half_a], labels[half_a]), "images")
    b_imgs, b_labels = images_[half_b], labels[half_b]
    report("digits: the other random half", stats(image_rows(b_imgs, b_labels), "images"), ref)
    small = order[len(order) // 2:][:100]
    report("digits: 100 random others", stats(image_rows(images_[small], labels[small]),
                                              "images"), ref)
    report("digits: brightness inverted", stats(image_rows(255 - b_imgs, b_labels), "images"),
           ref)
    halved = (b_imgs.astype(np.float32) * 0.5 + b_imgs.mean(axis=(1, 2), keepdims=True) * 0.5)
    report("digits: contrast halved", stats(image_rows(halved.astype(np.uint8), b_labels),
                                            "images"), ref)
    report("digits: 30% darker", stats(image_rows((b_imgs * 0.7).astype(np.uint8), b_labels),
                                       "images"), ref)
    keep = b_labels != 3
    report("digits: class 3 removed", stats(image_rows(b_imgs[keep], b_labels[keep]), "images"),
           ref)


def texts() -> None:
    """The reviews: halves, a small batch, texts cut short, a class removed."""
    frame = load_reviews().dropna()
    pairs = list(zip(frame["text"], frame["category"], strict=True))
    random.Random(0).shuffle(pairs)
    half = len(pairs) // 2
    a, b = pairs[:half], pairs[half:]
    ref_rows, tokenizer = text_rows([t for t, _ in a], [c for _, c in a])
    ref = stats(ref_rows, "text")

    def run(name, chosen):
        rows, _ = text_rows([t for t, _ in chosen], [c for _, c in chosen], tokenizer)
        report(name, stats(rows, "text"), ref)

    run("reviews: the other random half", b)
    run("reviews: 100 random others", b[:100])
    run("reviews: cut to 3 words", [(" ".join(t.split()[:3]), c) for t, c in b])
    run("reviews: cut to half their words", [(" ".join(t.split()[: max(1, len(t.split()) // 2)]),
                                              c) for t, c in b])
    run("reviews: 'plot' removed", [(t, c) for t, c in b if c != "plot"])


if __name__ == "__main__":
    print(f"drift_warning {CFG.validation.drift_warning}, drift_error "
          f"{CFG.validation.drift_error}, max_pvalue {CFG.validation.max_pvalue}\n")
    print("| scenario | largest distance | verdict | every statistic |\n|---|---|---|---|")
    images()
    texts()
