"""Benchmarks: the Spark ingest jobs on local[1] and local[2] beside a plain one-process loop.

images: 60,000 Fashion-MNIST training images (Debian's dataset-fashion-mnist) written once as
96x96 RGB JPEG files in class folders, ingested to 64x64 PNG. The loop does the same per-image
work with the same function and encoder settings (read, decode, RGB, resize, PNG encode).
text: the 13,905 Rotten Tomatoes snippets as .txt files in label folders. The loop does the same
cleaning and tokenising with the vocabulary already known (read, decode, clean, tokenise, ids).
Neither loop writes a dataset. Results go to benchmarks/results/ingest_<kind>.md.

    python benchmarks/ingest.py images|text [--limit N]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
           "boot")
OVERRIDES = {
    "images": ["images.height=64", "images.width=64", "images.encoding=png",
               "images.png_compression=1", "dataset.rows_per_row_group=1000"],
    "text": ["dataset.rows_per_row_group=1000"],
}
UNIT = {"images": "images", "text": "documents"}


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path) if path.suffix == ".gz" else path.open("rb") as handle:
        data = handle.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def find_fashion(stem: str) -> Path:
    for candidate in sorted(FASHION.rglob(f"{stem}*")):
        return candidate
    raise SystemExit(f"{stem} not found under {FASHION}: "
                     "install it with 'sudo apt-get install -y dataset-fashion-mnist'")


def write_images(raw: Path, limit: int) -> None:
    """The Fashion-MNIST training images as 96x96 RGB JPEG files, ``raw/<class>/<i>.jpg``."""
    images = read_idx(find_fashion("train-images"))
    labels = read_idx(find_fashion("train-labels"))
    staging = raw.with_name(raw.name + ".partial")
    for name in CLASSES:
        (staging / name).mkdir(parents=True, exist_ok=True)
    for index, (pixels, label) in enumerate(zip(images[:limit], labels[:limit], strict=True)):
        big = cv2.resize(pixels, (96, 96), interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(str(staging / CLASSES[label] / f"{index:05d}.jpg"),
                    cv2.cvtColor(big, cv2.COLOR_GRAY2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    staging.rename(raw)


def raw_inputs(kind: str, work: Path, limit: int | None) -> Path:
    raw = work / f"{kind}_raw_{limit or 'all'}"
    if not raw.exists():
        if kind == "images":
            write_images(raw, limit or 60000)
        else:
            from pipeline.samples.reviews import write_reviews

            write_reviews(raw, limit)
    return raw


def plain_loop(kind: str, raw: Path, vocab_file: Path) -> dict:
    """The per-input work in one process, with no Spark and no dataset written."""
    from pipeline.config import load_config

    cfg = load_config(overrides=OVERRIDES[kind])
    files = sorted(p for p in raw.rglob("*") if p.is_file())
    if kind == "images":
        from pipeline.ingest.images import prepare_image

        started = time.perf_counter()
        for path in files:
            prepare_image(path.read_bytes(), cfg.images)
    else:
        from pipeline.ingest.text_records import clean_text_document
        from pipeline.ingest.tokens import Tokenizer

        tokenizer = Tokenizer.from_vocab_text(vocab_file.read_text(encoding="utf-8"),
                                              cfg.text.token_pattern, cfg.text.max_len)
        ratios = cfg.split.model_dump()
        started = time.perf_counter()
        for path in files:
            record = clean_text_document(str(path), None, path.read_bytes(), path.parent.name,
                                         cfg.text, ratios)
            if record.reason is None:
                tokenizer(record.text)
    return {"inputs": len(files), "seconds": time.perf_counter() - started}


def spark_job(kind: str, raw: Path, output: Path, master: str) -> dict:
    """The whole ingest job on ``master``."""
    from pipeline.config import load_config
    from pipeline.logs import setup_logging
    from pipeline.spark import get_spark

    setup_logging()
    cfg = load_config(overrides=[*OVERRIDES[kind], f"spark.master={master}"])
    spark = get_spark(cfg.spark, app_name=f"bench-{kind}-{master}")
    if kind == "images":
        from pipeline.ingest.image_job import ingest_images as ingest
    else:
        from pipeline.ingest.text_job import ingest_text as ingest
    started = time.perf_counter()
    manifest = ingest(spark, cfg, str(raw), str(output), mode="overwrite")
    seconds = time.perf_counter() - started
    spark.stop()
    return {"inputs": manifest.discovered, "seconds": seconds}


def run_step(script: str, *args: str) -> dict:
    """One benchmark step in a fresh process (no warm caches shared between the sides): the
    JSON on the last line of ``script``'s output."""
    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                         cwd=REPO, check=False)
    if out.returncode != 0:
        raise SystemExit(f"benchmark step {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(kind: str, count: int, results: dict[str, dict]) -> str:
    rate = {name: r["inputs"] / r["seconds"] for name, r in results.items()}
    plain, one, two = rate["plain loop (1 process)"], rate["Spark local[1]"], rate["Spark local[2]"]
    what = ("Fashion-MNIST images as 96x96 RGB JPEG files -> 64x64 PNG (level 1)"
            if kind == "images" else "Rotten Tomatoes snippets as .txt files -> token ids")
    return "\n".join([
        f"# {kind.capitalize()} ingest benchmark", "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"{platform.machine()}, Python {platform.python_version()}. {count:,} {what}.",
        "Spark rows time the whole job (discover, clean, deduplicate, write Petastorm, check the "
        "counts, fingerprint); the loop only the per-input work, so the ratios favour the loop.",
        "", f"| path | seconds | {UNIT[kind]}/s |", "|---|---|---|",
        *[f"| {name} | {r['seconds']:.1f} | {rate[name]:,.0f} |" for name, r in results.items()],
        "", "| ratio | value | goal |", "|---|---|---|",
        f"| Spark local[1] / plain loop (per core) | {one / plain:.2f} | >= 0.8 |",
        f"| Spark local[2] / Spark local[1] | {two / one:.2f} | >= 1.7 |", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("images", "text"))
    parser.add_argument("--limit", type=int, help="at most this many inputs")
    parser.add_argument("--work", type=Path, default=REPO / "data" / "bench")
    parser.add_argument("--step", choices=("plain", "spark"), help=argparse.SUPPRESS)
    parser.add_argument("--master", help=argparse.SUPPRESS)
    args = parser.parse_args()
    raw = raw_inputs(args.kind, args.work, args.limit)
    output = args.work / f"{args.kind}_out"
    if args.step == "plain":
        print(json.dumps(plain_loop(args.kind, raw, output / "vocab.txt")))
        return
    if args.step == "spark":
        print(json.dumps(spark_job(args.kind, raw, output, args.master)))
        return
    common = [args.kind, "--work", str(args.work), *(["--limit", str(args.limit)]
                                                     if args.limit else [])]
    results = {f"Spark {m}": run_step(__file__, *common, "--step", "spark", "--master", m)
               for m in ("local[1]", "local[2]")}
    # after Spark: the text loop takes the vocabulary the job built as already known
    results = {"plain loop (1 process)": run_step(__file__, *common, "--step", "plain"), **results}
    text = report(args.kind, results["Spark local[1]"]["inputs"], results)
    target = REPO / "benchmarks" / "results" / f"ingest_{args.kind}.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
