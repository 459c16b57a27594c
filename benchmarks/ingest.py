"""Benchmarks: the Spark ingest jobs on local[1] and local[2] beside a plain one-process loop.

images: 60,000 Fashion-MNIST training images (Debian's dataset-fashion-mnist) written once as
96x96 RGB JPEG files in class folders, ingested to 64x64 PNG. Two plain loops do the per-image
work (read, decode, RGB, resize, PNG encode at the same level): the fastest plain one (OpenCV
alone), and the pipeline's own function (Pillow, with its safety checks). The Spark jobs also run
on the first 6,000 images: the difference between the two sizes is the marginal rate, start-up
costs removed.
text: 500,000 documents made from the Rotten Tomatoes snippets (``write_documents``) in one CSV,
ingested with the default configuration (near-duplicate detection on). The loop reads the same
CSV and does the same cleaning and tokenising with the vocabulary already known (parse, clean,
tokenise, ids). The Spark jobs also run on the first 125,000 and 1,000 documents: marginal
rates, how the cost grows with the corpus, and the driver's peak memory at each size.
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
    "text": [],  # the defaults a user gets
}
UNIT = {"images": "images", "text": "documents"}
PLAIN = {"opencv": "plain loop, OpenCV (1 process)",
         "images": "plain loop, Pillow (pipeline's function)", "text": "plain loop (1 process)"}
TEXT_DOCUMENTS = 500_000  # the documents of the large text run
# the smaller runs, as fractions of the large one: marginal rates (and text's smallest, the
# fixed costs): of 60,000 images 6,000; of 500,000 documents 125,000 and 1,000
SMALLER = {"images": (10,), "text": (4, 500)}
LARGE = {"images": 60000, "text": TEXT_DOCUMENTS}
# the stages of an ingest timed, by module (``time_stages``): where a job's time goes
WRITER = {"pipeline.datasets.writer": ("_statistics", "_write_split", "_fingerprint",
                                       "_check_accounting")}
STAGES = {"images": {"pipeline.ingest.image_job": ("discover_folder", "reused_rows", "_clean",
                                                   "apply_exact_duplicates", "with_label_index",
                                                   "with_images"), **WRITER},
          "text": {"pipeline.spark.listing": ("list_tree",),
                   "pipeline.ingest.text_job": ("_ranges", "_cached",
                                                "apply_exact_duplicates",
                                                "apply_near_duplicates", "_vocabulary",
                                                "_encoded", "_tokens_per_document"), **WRITER}}
STAGE_NAMES = {"discover_folder": "listing (Spark)", "reused_rows": "previous rows: sources",
               "_clean": "read + decode + profile (+ reused rows), cached",
               "apply_exact_duplicates": "exact duplicates", "with_label_index": "label map",
               "with_images": "previous rows: files kept whole", "_statistics": "statistics",
               "_write_split": "write the splits (Petastorm)", "_fingerprint": "fingerprint",
               "_check_accounting": "accounting check",
               "list_tree": "listing", "_ranges": "CSV ranges: cuts and line counts",
               "_cached": "read + parse + clean, cached",
               "apply_near_duplicates": "near duplicates (MinHash bands, exact Jaccard)",
               "_vocabulary": "vocabulary", "_encoded": "token ids + label map",
               "_tokens_per_document": "token statistics"}


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


def sentence_chain() -> tuple[dict, list]:
    """An order-2 word chain over the Rotten Tomatoes snippets of each category: (category ->
    {(word, word): next words}, category -> sentence openings)."""
    import re

    from pipeline.samples.reviews import load_reviews

    chains: dict = {}
    openings: dict = {}
    for category, group in load_reviews().dropna().groupby("category"):
        chain, starts = chains.setdefault(category, {}), openings.setdefault(category, [])
        for text in group["text"]:
            for sentence in re.split(r"(?<=[.!?])\s+", text.strip()):
                words = sentence.split()
                if len(words) < 3:
                    continue
                starts.append((words[0], words[1]))
                for i in range(len(words) - 1):
                    chain.setdefault((words[i], words[i + 1]), []).append(
                        words[i + 2] if i + 2 < len(words) else None)
    return chains, openings


def write_documents(raw: Path, count: int, seed: int = 0) -> None:
    """``count`` documents as rows of ``raw/documents.csv`` (columns text, label). Each is 1 to
    4 new sentences walked on an order-2 word chain built from the Rotten Tomatoes snippets of
    one category (fresh, rotten, plot), which is its label: real words in real word-trigrams,
    sentences rarely repeated. One document in a hundred is an earlier one with a word changed
    (a near-duplicate to find)."""
    import csv
    import random

    chains, openings = sentence_chain()
    names = sorted(chains)
    pick = random.Random(seed)
    staging = raw.with_name(raw.name + ".partial")
    staging.mkdir(parents=True, exist_ok=True)
    written: list[tuple[str, str]] = []
    with (staging / "documents.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for _ in range(count):
            if written and pick.random() < 0.01:
                text, label = written[pick.randrange(len(written))]
                words = text.split()
                words[pick.randrange(len(words))] = pick.choice(("fine", "odd", "new", "big"))
                writer.writerow([" ".join(words), label])
                continue
            label = pick.choice(names)
            text = " ".join(_sentence(chains[label], openings[label], pick)
                            for _ in range(pick.randint(1, 4)))
            writer.writerow([text, label])
            if len(written) < 10000:
                written.append((text, label))
    staging.rename(raw)


def _sentence(chain: dict, openings: list, pick, longest: int = 40) -> str:
    """One walk on ``chain`` from a random opening, to a sentence's end or ``longest`` words."""
    words = list(pick.choice(openings))
    while len(words) < longest:
        following = chain.get((words[-2], words[-1]))
        if not following:
            break
        word = following[pick.randrange(len(following))]
        if word is None:
            break
        words.append(word)
    return " ".join(words)


def raw_inputs(kind: str, work: Path, limit: int | None) -> Path:
    raw = work / f"{kind}_raw_{limit or 'all'}"
    if not raw.exists():
        if kind == "images":
            write_images(raw, limit or LARGE["images"])
        else:
            write_documents(raw, limit or LARGE["text"])
    return raw


def time_stages(kind: str) -> dict[str, float]:
    """Wrap the ``STAGES[kind]`` functions: each call adds its seconds to the returned dict."""
    import importlib

    spent: dict[str, float] = {}

    def timed(module, name):
        function = getattr(module, name)

        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - started
        setattr(module, name, wrapper)

    for module_name, names in STAGES[kind].items():
        for name in names:
            timed(importlib.import_module(module_name), name)
    return spent


def stage_table(spent: dict[str, float]) -> list[str]:
    """A markdown table of ``time_stages``' seconds, in the order the stages ran."""
    return ["Stages are timed as Spark runs them: each includes the lazy work its actions "
            "trigger (in text ingest the vocabulary builds the deduplicated cache, and the write "
            "computes the token ids); the first stage to run Python tasks also starts the "
            "Python workers.", "",
            "| stage | seconds |", "|---|---|",
            *[f"| {STAGE_NAMES[name]} | {seconds:.1f} |" for name, seconds in spent.items()],
            ""]


def plain_loop(kind: str, raw: Path, vocab_file: Path) -> dict:
    """The per-input work in one process, with no Spark and no dataset written."""
    from pipeline.config import load_config

    cfg = load_config(overrides=OVERRIDES["images" if kind == "opencv" else kind])
    files = sorted(p for p in raw.rglob("*") if p.is_file())
    if kind == "images":
        from pipeline.ingest.images import prepare_image

        started = time.perf_counter()
        for path in files:
            prepare_image(path.read_bytes(), cfg.images)
    elif kind == "opencv":
        started = time.perf_counter()
        size, level = (cfg.images.width, cfg.images.height), cfg.images.png_compression
        for path in files:
            pixels = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
            rgb = cv2.cvtColor(cv2.resize(pixels, size, interpolation=cv2.INTER_AREA),
                               cv2.COLOR_BGR2RGB)
            cv2.imencode(".png", rgb, [cv2.IMWRITE_PNG_COMPRESSION, level])
    else:
        return plain_text_loop(cfg, files, vocab_file)
    return {"inputs": len(files), "seconds": time.perf_counter() - started}


def plain_text_loop(cfg, files: list[Path], vocab_file: Path) -> dict:
    """Parse the CSV files' rows, clean and tokenise each to ids, in one process."""
    import csv

    from pipeline.ingest.text_records import clean_text_document
    from pipeline.ingest.tokens import Tokenizer

    tokenizer = Tokenizer.from_vocab_text(vocab_file.read_text(encoding="utf-8"),
                                          cfg.text.token_pattern, cfg.text.max_len)
    ratios, inputs = cfg.split.model_dump(), 0
    started = time.perf_counter()
    for path in files:
        with path.open(encoding="utf-8", newline="") as handle:
            for line, row in enumerate(csv.DictReader(handle), start=2):
                record = clean_text_document(str(path), line, row["text"], row["label"],
                                             cfg.text, ratios)
                inputs += 1
                if record.reason is None:
                    tokenizer(record.text)
    return {"inputs": inputs, "seconds": time.perf_counter() - started}


def peak_memory(spark) -> dict[str, float]:
    """Peak resident memory (MiB) of this Python driver and of Spark's JVM (in local mode the
    driver and the executors)."""
    import resource

    jvm = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    status = Path(f"/proc/{jvm}/status").read_text()
    jvm_kib = next(int(line.split()[1]) for line in status.splitlines()
                   if line.startswith("VmHWM:"))
    return {"python": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "jvm": jvm_kib / 1024}


def spark_job(kind: str, raw: Path, output: Path, master: str) -> dict:
    """The whole ingest job on ``master``."""
    from pipeline.config import load_config
    from pipeline.logs import setup_logging
    from pipeline.spark import get_spark

    setup_logging()
    spent = time_stages(kind)
    cfg = load_config(overrides=[*OVERRIDES[kind], f"spark.master={master}"])
    spark = get_spark(cfg.spark, app_name=f"bench-{kind}-{master}")
    if kind == "images":
        from pipeline.ingest.image_job import ingest_images as ingest
    else:
        from pipeline.ingest.text_job import ingest_text as ingest
    started = time.perf_counter()
    manifest = ingest(spark, cfg, str(raw), str(output), mode="overwrite")
    seconds = time.perf_counter() - started
    memory = peak_memory(spark)
    spark.stop()
    return {"inputs": manifest.discovered, "seconds": seconds, "stages": spent,
            "memory": memory, "quarantine": dict(manifest.quarantine)}


def run_step(script: str, *args: str) -> dict:
    """One benchmark step in a fresh process (no warm caches shared between the sides): the
    JSON on the last line of ``script``'s output."""
    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                         cwd=REPO, check=False)
    if out.returncode != 0:
        raise SystemExit(f"benchmark step {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


MASTERS = ("local[1]", "local[2]")


def smaller(kind: str, count: int) -> list[int]:
    """The inputs of the smaller runs beside a large run of ``count``."""
    return [count // part for part in SMALLER[kind]]


def run_name(master: str, inputs: int | None = None) -> str:
    """A Spark row's name: the master, and the inputs when it is a smaller run."""
    return f"Spark {master}" + (f", {inputs:,}" if inputs else "")


def ratio_rows(kind: str, results: dict[str, dict]) -> list[tuple[str, float, str]]:
    """(ratio, value, goal) rows: per core against the fastest plain loop, scaling, and for
    text how the cost grows with the corpus."""
    rate = {name: r["inputs"] / r["seconds"] for name, r in results.items()}
    best = PLAIN["opencv" if kind == "images" else kind]  # the fastest plain loop
    goal = ">= 0.8" if kind == "images" else ">= 0.5"
    small, *least = smaller(kind, results["Spark local[1]"]["inputs"])
    margin = {m: marginal(results[run_name(m)], results[run_name(m, small)]) for m in MASTERS}
    rows = [(f"Spark local[1] marginal / {best} (per core)", margin["local[1]"] / rate[best],
             goal)]
    if kind == "images":
        rows.append((f"Spark local[1] marginal / {PLAIN[kind]} (per core)",
                     margin["local[1]"] / rate[PLAIN[kind]], "-"))
    rows.append(("Spark local[2] / local[1], marginal", margin["local[2]"] / margin["local[1]"],
                 ">= 1.7"))
    if kind == "text":  # the time past the fixed costs (the 1,000-document run), 4x the input
        fixed = {m: results[run_name(m, least[0])]["seconds"] for m in MASTERS}
        rows += [(f"Spark {m}: 4x the documents / time past the fixed costs",
                  (results[run_name(m)]["seconds"] - fixed[m])
                  / (results[run_name(m, small)]["seconds"] - fixed[m]), "<= 4.4")
                 for m in MASTERS]
    return [*rows, (f"Spark local[1] / {best} (per core), whole job",
                    rate["Spark local[1]"] / rate[best], goal),
            ("Spark local[2] / Spark local[1], whole job",
             rate["Spark local[2]"] / rate["Spark local[1]"], ">= 1.7")]


def memory_rows(results: dict[str, dict]) -> list[str]:
    """The peak resident memory of each Spark run's driver and JVM."""
    return ["| run | inputs | Python driver peak MiB | JVM peak MiB |", "|---|---|---|---|",
            *[f"| {name} | {r['inputs']:,} | {r['memory']['python']:,.0f} | "
              f"{r['memory']['jvm']:,.0f} |" for name, r in results.items() if "memory" in r],
            ""]


def report(kind: str, count: int, results: dict[str, dict]) -> str:
    rate = {name: r["inputs"] / r["seconds"] for name, r in results.items()}
    small = smaller(kind, count)[0]
    what = ("Fashion-MNIST images as 96x96 RGB JPEG files -> 64x64 PNG (level 1)"
            if kind == "images" else "documents in one CSV -> token ids")
    largest = results["Spark local[1]"]
    return "\n".join([
        f"# {kind.capitalize()} ingest benchmark", "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"{platform.machine()}, Python {platform.python_version()}. {count:,} {what}. "
        f"`python benchmarks/ingest.py {kind}`.",
        "Spark rows time the whole job (discover, clean, deduplicate, write Petastorm, check the "
        "counts, fingerprint); the loops only the per-input work, so the whole-job ratios favour "
        "the loops. A marginal rate is (inputs of the large run - of the small run) / (seconds "
        "of the large run - of the small run): what one more input costs, start-up removed.",
        "", f"| path | inputs | seconds | {UNIT[kind]}/s |", "|---|---|---|---|",
        *[f"| {name} | {r['inputs']:,} | {r['seconds']:.1f} | {rate[name]:,.0f} |"
          for name, r in results.items()],
        *[f"| Spark {m}, marginal ({count:,} - {small:,}) | | | "
          f"{marginal(results[run_name(m)], results[run_name(m, small)]):,.0f} |"
          for m in MASTERS],
        "", "| ratio | value | goal |", "|---|---|---|",
        *[f"| {name} | {value:.2f} | {goal} |" for name, value, goal in ratio_rows(kind, results)],
        "", *memory_rows(results),
        f"Quarantined by Spark local[1] of {count:,}: {largest.get('quarantine', {})}.", "",
        f"Where Spark local[1]'s {count:,}-input job spends its time:", "",
        *stage_table(largest["stages"])])


def marginal(large: dict, small: dict) -> float:
    """Inputs per second that the larger run added over the smaller one."""
    return (large["inputs"] - small["inputs"]) / (large["seconds"] - small["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("images", "text", "opencv"))  # opencv: a loop only
    parser.add_argument("--limit", type=int, help="at most this many inputs")
    parser.add_argument("--work", type=Path, default=REPO / "data" / "bench")
    parser.add_argument("--step", choices=("plain", "spark"), help=argparse.SUPPRESS)
    parser.add_argument("--master", help=argparse.SUPPRESS)
    args = parser.parse_args()
    raw = raw_inputs("images" if args.kind == "opencv" else args.kind, args.work, args.limit)
    output = args.work / f"{args.kind}_out"
    if args.step == "plain":
        print(json.dumps(plain_loop(args.kind, raw, output / "vocab.txt")))
        return
    if args.step == "spark":
        print(json.dumps(spark_job(args.kind, raw, output, args.master)))
        return
    results = run_all(args.kind, args.work, args.limit)
    text = report(args.kind, results["Spark local[1]"]["inputs"], results)
    target = REPO / "benchmarks" / "results" / f"ingest_{args.kind}.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    print(text)


def run_all(kind: str, work: Path, limit: int | None) -> dict[str, dict]:
    """Every row, each step in its own process: Spark at each size, then the plain loops."""
    def step(inputs: int | None, *more: str) -> dict:
        size = ["--limit", str(inputs)] if inputs else []
        return run_step(__file__, *more, "--work", str(work), *size)

    large = limit or LARGE[kind]
    if min(smaller(kind, large)) < 1:
        raise SystemExit(f"--limit {limit}: too few inputs for the smaller runs")
    sizes = [*reversed(smaller(kind, large)), None]  # the large run (``limit``, else all) last
    spark = {run_name(m, inputs): step(inputs or limit, kind, "--step", "spark", "--master", m)
             for inputs in sizes for m in MASTERS}
    plain = {PLAIN["opencv"]: step(limit, "opencv", "--step", "plain")} if kind == "images" else {}
    # after Spark: the text loop takes the vocabulary the job built as already known
    return {PLAIN[kind]: step(limit, kind, "--step", "plain"), **plain, **spark}


if __name__ == "__main__":
    main()
