"""Benchmark: a retrain's ingest when 1% of the 60,000-image tree is new, beside a full rebuild.

The tree of ``benchmarks/ingest.py images`` (60,000 Fashion-MNIST images as 96x96 JPEG files)
is linked into a retrain input with every 100th file held back; a first version is built from
the others. Then those arrive and two versions of the whole tree are built, as ``pipeline
retrain`` builds them (input snapshot, compare, ingest with the same settings): one reusing the
first version (``retrain.reuse_rows``, the default), one reading every file again. The same
runs on the first 6,000 images give marginal costs (start-up and per-job costs removed). Each
step runs in a fresh process; the times include the snapshot, not Spark's start-up. Results:
benchmarks/results/retrain_ingest.md.

    python benchmarks/retrain.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from ingest import OVERRIDES, REPO, raw_inputs, run_step, stage_table, time_stages

STEPS = {"first": "first version (99%)", "reuse": "retrain ingest, 1% new, reused",
         "full": "retrain ingest, 1% new, every file read"}
SIZES = (60000, 6000)


def link_tree(source: Path, target: Path) -> list[Path]:
    """``source``'s files hard-linked under ``target``, but for every 100th: those returned."""
    held = []
    for index, path in enumerate(sorted(source.rglob("*.jpg"))):
        (target / path.parent.name).mkdir(parents=True, exist_ok=True)
        if index % 100 == 0:
            held.append(path)
            continue
        os.link(path, target / path.parent.name / path.name)
    return held


def build(step: str, raw: Path, versions: Path) -> dict:
    """One version built as a retrain builds it; ``full``: into a copy of the folder, every
    file read again."""
    from pipeline import storage
    from pipeline.config import load_config
    from pipeline.datasets.manifest import committed_versions
    from pipeline.ingest.image_job import ingest_images
    from pipeline.ingest.image_reuse import Reuse
    from pipeline.logs import setup_logging
    from pipeline.retrain import inputs
    from pipeline.spark import get_spark

    setup_logging()
    spent = time_stages("images") if step == "reuse" else {}
    cfg = load_config(overrides=OVERRIDES["images"])
    spark = get_spark(cfg.spark, app_name=f"bench-retrain-{step}")
    started = time.perf_counter()
    names = committed_versions(storage.to_uri(versions))
    latest = storage.join(storage.to_uri(versions), names[-1]) if names else None
    previous = inputs.read_snapshot(latest) if latest else None
    snapshot = inputs.take_snapshot(raw.as_uri(), previous[1] if previous else None)
    changes = inputs.compare(previous[1] if previous else None, snapshot)
    unchanged = frozenset(snapshot) - frozenset(changes.new + changes.changed)
    reuse = Reuse(latest, unchanged) if latest and step == "reuse" else None
    manifest = ingest_images(spark, cfg, str(raw), str(versions), mode="new-version",
                             attachments={inputs.SNAPSHOT_NAME: inputs.to_json(raw.as_uri(),
                                                                               snapshot)},
                             reuse=reuse)
    seconds = time.perf_counter() - started
    spark.stop()
    return {"inputs": manifest.discovered, "seconds": seconds,
            "reused": manifest.extra["reused_rows"], "carried": manifest.extra["carried_files"],
            "fingerprint": manifest.fingerprint, "stages": spent}


def scenario(tree: Path, work: Path, size: int) -> dict[str, dict]:
    """The three steps on ``tree`` (``size`` images), in ``work``."""
    raw, versions = work / f"retrain_raw_{size}", work / f"retrain_versions_{size}"
    aside = versions.with_name(versions.name + "_first")
    for folder in (raw, versions, aside):
        shutil.rmtree(folder, ignore_errors=True)
    held = link_tree(tree, raw)
    common = ["--raw", str(raw), "--versions", str(versions), "--step"]
    results = {STEPS["first"]: run_step(__file__, *common, "first")}
    for path in held:
        os.link(path, raw / path.parent.name / path.name)
    shutil.copytree(versions, aside)
    results[STEPS["reuse"]] = run_step(__file__, *common, "reuse")
    shutil.rmtree(versions)  # the full rebuild starts from the same first version
    aside.rename(versions)
    results[STEPS["full"]] = run_step(__file__, *common, "full")
    return results


def report(results: dict[int, dict[str, dict]]) -> str:
    large, small = (results[size] for size in SIZES)
    whole = {step: large[STEPS[step]]["seconds"] for step in ("reuse", "full")}
    extra = {step: (large[STEPS[step]]["seconds"] - small[STEPS[step]]["seconds"])
             / (large[STEPS[step]]["inputs"] - small[STEPS[step]]["inputs"])
             for step in ("reuse", "full")}
    same = all(r[STEPS["reuse"]]["fingerprint"] == r[STEPS["full"]]["fingerprint"]
               for r in results.values())
    return "\n".join([
        "# Retrain ingest benchmark", "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"{platform.machine()}, Python {platform.python_version()}, Spark local[*]. "
        "Fashion-MNIST images as 96x96 RGB JPEG files -> 64x64 PNG; `python benchmarks/"
        "retrain.py`. Times: input snapshot + the whole ingest job, Spark's start-up excluded. "
        "The marginal cost is what one more input in the tree adds (the 60,000 run minus the "
        "6,000 run, per input).", "",
        "| tree | step | inputs | rows reused | files copied | seconds |",
        "|---|---|---|---|---|---|",
        *[f"| {size:,} | {name} | {r['inputs']:,} | {r['reused']:,} | {r['carried']:,} "
          f"| {r['seconds']:.1f} |"
          for size, steps in results.items() for name, r in steps.items()],
        "", "| ratio | value | goal |", "|---|---|---|",
        f"| 60,000 tree: reused / every file read, whole job | "
        f"{whole['reuse'] / whole['full']:.2f} | <= 0.2 |",
        f"| marginal cost per input: reused / every file read | "
        f"{extra['reuse'] / extra['full']:.2f} | - |",
        "", f"Same fingerprint as the full rebuild, both trees: {'yes' if same else 'NO'}.", "",
        "Where the reusing run on the 60,000 tree spends its time:", "",
        *stage_table(large[STEPS["reuse"]]["stages"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "data" / "bench")
    parser.add_argument("--raw", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--versions", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--step", choices=tuple(STEPS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(build(args.step, args.raw, args.versions)))
        return
    results = {size: scenario(raw_inputs("images", args.work, None if size == 60000 else size),
                              args.work, size) for size in SIZES}
    text = report(results)
    (REPO / "benchmarks" / "results" / "retrain_ingest.md").write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
