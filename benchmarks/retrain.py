"""Benchmark: a retrain's ingest when 1% of the 60,000-image tree is new, beside a full rebuild.

The tree of ``benchmarks/ingest.py images`` (60,000 Fashion-MNIST images as 96x96 JPEG files)
is linked into a retrain input with 600 files held back; a first version is built from the
other 59,400. Then the 600 arrive and two versions of all 60,000 are built, as ``pipeline
retrain`` builds them (input snapshot, compare, ingest with the same settings): one reusing the
first version's rows (``retrain.reuse_rows``, the default), one reading every file again. Each
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

from ingest import OVERRIDES, REPO, raw_inputs, run_step

HELD_BACK = 600  # 1% of the tree: the new files of the retrain
STEPS = {"first": "first version (59,400 files)",
         "reuse": "retrain ingest, 1% new, rows reused",
         "full": "retrain ingest, 1% new, every file read"}


def link_tree(source: Path, target: Path, hold_back: int) -> list[Path]:
    """``source``'s files hard-linked under ``target``, but for every 100th: those returned."""
    held = []
    for index, path in enumerate(sorted(source.rglob("*.jpg"))):
        (target / path.parent.name).mkdir(parents=True, exist_ok=True)
        if index % 100 == 0 and len(held) < hold_back:
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
    cfg = load_config(overrides=OVERRIDES["images"])
    spark = get_spark(cfg.spark, app_name=f"bench-retrain-{step}")
    started = time.perf_counter()
    names = committed_versions(storage.to_uri(versions))
    latest = storage.join(storage.to_uri(versions), names[-1]) if names else None
    previous = inputs.read_snapshot(latest) if latest else None
    snapshot = inputs.take_snapshot(raw.as_uri(), previous[1] if previous else None)
    changes = inputs.compare(previous[1] if previous else None, snapshot)
    reuse = (Reuse(latest, frozenset(changes.new + changes.changed))
             if latest and step == "reuse" else None)
    manifest = ingest_images(spark, cfg, str(raw), str(versions), mode="new-version",
                             attachments={inputs.SNAPSHOT_NAME: inputs.to_json(raw.as_uri(),
                                                                               snapshot)},
                             reuse=reuse)
    seconds = time.perf_counter() - started
    spark.stop()
    return {"inputs": manifest.discovered, "seconds": seconds,
            "reused": manifest.extra["reused_rows"], "fingerprint": manifest.fingerprint}


def report(results: dict[str, dict]) -> str:
    reuse, full = results[STEPS["reuse"]], results[STEPS["full"]]
    same = "yes" if reuse["fingerprint"] == full["fingerprint"] else "NO"
    return "\n".join([
        "# Retrain ingest benchmark", "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"{platform.machine()}, Python {platform.python_version()}, Spark local[*]. "
        "Fashion-MNIST images as 96x96 RGB JPEG files -> 64x64 PNG; `python benchmarks/"
        "retrain.py`. Times: input snapshot + the whole ingest job, Spark's start-up excluded.",
        "", "| step | inputs | rows reused | seconds |", "|---|---|---|---|",
        *[f"| {name} | {r['inputs']:,} | {r['reused']:,} | {r['seconds']:.1f} |"
          for name, r in results.items()],
        "", "| ratio | value | goal |", "|---|---|---|",
        f"| rows reused / every file read | {reuse['seconds'] / full['seconds']:.2f} | <= 0.2 |",
        "", f"Same fingerprint as the full rebuild: {same}.", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "data" / "bench")
    parser.add_argument("--step", choices=tuple(STEPS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    raw, versions = args.work / "retrain_raw", args.work / "retrain_versions"
    if args.step:
        print(json.dumps(build(args.step, raw, versions)))
        return
    tree = raw_inputs("images", args.work, None)
    for folder in (raw, versions, versions.with_name("retrain_versions_full")):
        shutil.rmtree(folder, ignore_errors=True)
    held = link_tree(tree, raw, HELD_BACK)
    common = ["--work", str(args.work), "--step"]
    results = {STEPS["first"]: run_step(__file__, *common, "first")}
    for path in held:
        os.link(path, raw / path.parent.name / path.name)
    shutil.copytree(versions, versions.with_name("retrain_versions_full"))
    results[STEPS["reuse"]] = run_step(__file__, *common, "reuse")
    shutil.rmtree(versions)  # the full rebuild starts from the same first version
    shutil.move(versions.with_name("retrain_versions_full"), versions)
    results[STEPS["full"]] = run_step(__file__, *common, "full")
    text = report(results)
    (REPO / "benchmarks" / "results" / "retrain_ingest.md").write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
