"""Benchmark: the Spark image ingest on local[1] and local[2] beside a plain one-process loop.

60,000 Fashion-MNIST training images (Debian's dataset-fashion-mnist) are written once as 96x96
RGB JPEG files in class folders, then ingested to 64x64 PNG. The plain loop does the same
per-image work with the same function and encoder settings (read, decode, RGB, resize, PNG),
without Spark and without writing a dataset. Results go to benchmarks/results/ingest_images.md.

    python benchmarks/ingest_images.py [--images N]
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
OVERRIDES = ["images.height=64", "images.width=64", "images.encoding=png",
             "images.png_compression=1", "dataset.rows_per_row_group=1000"]


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path) if path.suffix == ".gz" else path.open("rb") as handle:
        data = handle.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _find(stem: str) -> Path:
    for candidate in sorted(FASHION.rglob(f"{stem}*")):
        return candidate
    raise SystemExit(f"{stem} not found under {FASHION}: "
                     "install it with 'sudo apt-get install -y dataset-fashion-mnist'")


def write_raw(raw: Path, limit: int) -> int:
    """The training images as 96x96 RGB JPEG files, ``raw/<class>/<index>.jpg``."""
    if raw.exists():
        return sum(1 for _ in raw.rglob("*.jpg"))
    images, labels = _idx(_find("train-images")), _idx(_find("train-labels"))
    staging = raw.with_name(raw.name + ".partial")
    for name in CLASSES:
        (staging / name).mkdir(parents=True, exist_ok=True)
    for index, (pixels, label) in enumerate(zip(images[:limit], labels[:limit], strict=True)):
        big = cv2.resize(pixels, (96, 96), interpolation=cv2.INTER_LINEAR)
        rgb = cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)
        cv2.imwrite(str(staging / CLASSES[label] / f"{index:05d}.jpg"), rgb,
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
    staging.rename(raw)
    return min(limit, len(labels))


def plain_loop(raw: Path) -> dict:
    """Read, decode, RGB, resize, PNG-encode every file in one process: images/s."""
    from pipeline.config import load_config
    from pipeline.ingest.images import prepare_image

    images = load_config(overrides=OVERRIDES).images
    files = sorted(raw.rglob("*.jpg"))
    started = time.perf_counter()
    for path in files:
        prepare_image(path.read_bytes(), images)
    seconds = time.perf_counter() - started
    return {"images": len(files), "seconds": seconds}


def spark_job(raw: Path, output: Path, master: str) -> dict:
    """The whole ingest job (discover, decode, dedup, write, fingerprint) on ``master``."""
    from pipeline.config import load_config
    from pipeline.ingest.image_job import ingest_images
    from pipeline.logs import setup_logging
    from pipeline.spark import get_spark

    setup_logging()
    cfg = load_config(overrides=[*OVERRIDES, f"spark.master={master}"])
    spark = get_spark(cfg.spark, app_name=f"bench-{master}")
    started = time.perf_counter()
    manifest = ingest_images(spark, cfg, str(raw), str(output), mode="overwrite")
    seconds = time.perf_counter() - started
    spark.stop()
    return {"images": manifest.discovered, "seconds": seconds,
            "row_groups": {k: v.row_groups for k, v in manifest.splits.items()}}


def _in_subprocess(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         cwd=REPO, check=False)
    if out.returncode != 0:
        raise SystemExit(f"benchmark step {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60000)
    parser.add_argument("--work", type=Path, default=REPO / "data" / "bench")
    parser.add_argument("--step", choices=("plain", "spark"), help=argparse.SUPPRESS)
    parser.add_argument("--master", help=argparse.SUPPRESS)
    args = parser.parse_args()
    raw = args.work / f"fashion_jpeg_{args.images}"
    if args.step == "plain":
        print(json.dumps(plain_loop(raw)))
        return
    if args.step == "spark":
        print(json.dumps(spark_job(raw, args.work / "out", args.master)))
        return

    count = write_raw(raw, args.images)
    print(f"{count} raw JPEG files in {raw}", flush=True)
    results = {"plain loop (1 process)": _in_subprocess("--images", str(args.images),
                                                        "--step", "plain")}
    for master in ("local[1]", "local[2]"):
        results[f"Spark {master}"] = _in_subprocess("--images", str(args.images),
                                                    "--step", "spark", "--master", master)
    rate = {name: r["images"] / r["seconds"] for name, r in results.items()}
    plain, one, two = (rate["plain loop (1 process)"], rate["Spark local[1]"],
                       rate["Spark local[2]"])
    lines = [
        "# Image ingest benchmark", "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}.",
        f"{count} Fashion-MNIST images as 96x96 RGB JPEG files -> 64x64 PNG (level 1).",
        "Spark rows time the whole job (discover, decode, dedup, write Petastorm, fingerprint); "
        "the plain loop only the per-image work, so the ratios favour the loop.", "",
        "| path | seconds | images/s |", "|---|---|---|",
        *[f"| {name} | {r['seconds']:.1f} | {rate[name]:,.0f} |" for name, r in results.items()],
        "", "| ratio | value | goal |", "|---|---|---|",
        f"| Spark local[1] / plain loop (per core) | {one / plain:.2f} | >= 0.8 |",
        f"| Spark local[2] / Spark local[1] | {two / one:.2f} | >= 1.7 |", "",
    ]
    target = REPO / "benchmarks" / "results" / "ingest_images.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
