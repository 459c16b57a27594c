"""Benchmarks: the training input pipeline and Horovod scaling, side by side in one run.

On the 60,000 Fashion-MNIST training images (Debian's dataset-fashion-mnist) written once as
28x28 PNG files in class folders and ingested once into a dataset version:
- the Petastorm reader into tf.data (as each worker reads it) against
  ``tf.keras.utils.image_dataset_from_directory`` over the same PNG files;
- the CNN's consumption rate on synthetic in-memory batches, and on the real reader;
- Horovod with 2 processes of 1 thread each against 1 process of 1 thread;
- ``pipeline train`` against a plain ``horovodrun`` Keras loop (the same CNN, batch, threads and
  steps per epoch, on one synthetic in-memory batch per rank), at 1 and 2 processes;
- ``train.precision``: float32 against mixed bfloat16 and mixed float16 (2 processes), speed and
  validation accuracy after the same 2 epochs, on the first 3,000 images (a CPU without native
  16-bit arithmetic emulates it, at a few dozen images/s).
Results go to benchmarks/results/train.md.

    python benchmarks/train.py [--images N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import CLASSES, find_fashion, read_idx, run_step  # the Fashion-MNIST files, read once

REPO = Path(__file__).resolve().parents[1]
BATCH = 64
DATASET_OVERRIDES = ["images.color_mode=grayscale", "dataset.rows_per_row_group=1000",
                     "split.train=0.9", "split.val=0.1", "split.test=0"]


PRECISION_IMAGES = 3000  # the precision rows' subset


def _ingest(raw: Path, dataset: Path) -> None:
    from pipeline.config import load_config
    from pipeline.ingest.image_job import ingest_images
    from pipeline.spark import get_spark

    cfg = load_config(overrides=DATASET_OVERRIDES)
    spark = get_spark(cfg.spark, app_name="bench-train-ingest")
    ingest_images(spark, cfg, str(raw), str(dataset), mode="overwrite")
    spark.stop()


def prepare_subset(work: Path, raw: Path) -> str:
    """The first PRECISION_IMAGES of ``raw`` (by file name), hard-linked into class folders and
    ingested (both cached)."""
    subset, dataset = work / f"fashion_png_{PRECISION_IMAGES}", work / "fashion_subset_dataset"
    if not subset.exists():
        for path in sorted(raw.rglob("*.png"), key=lambda p: p.name)[:PRECISION_IMAGES]:
            (subset / path.parent.name).mkdir(parents=True, exist_ok=True)
            os.link(path, subset / path.parent.name / path.name)  # a symlink would leave the root
    if not (dataset / "manifest.json").exists():
        _ingest(subset, dataset)
    return dataset.as_uri()


def prepare(work: Path) -> tuple[Path, str]:
    """The raw PNG folders and the dataset version ingested from them (both cached)."""
    raw, dataset = work / "fashion_png_60000", work / "fashion_dataset"
    if not raw.exists():
        import cv2

        images = read_idx(find_fashion("train-images"))
        labels = read_idx(find_fashion("train-labels"))
        staging = raw.with_name(raw.name + ".partial")
        for name in CLASSES:
            (staging / name).mkdir(parents=True, exist_ok=True)
        for index, (pixels, label) in enumerate(zip(images, labels, strict=True)):
            cv2.imwrite(str(staging / CLASSES[label] / f"{index:05d}.png"), pixels)
        staging.rename(raw)
    if not (dataset / "manifest.json").exists():
        _ingest(raw, dataset)
    return raw, dataset.as_uri()


def _limit_threads(tf, threads: int) -> None:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def _images_per_s(batches, count: int) -> float:
    """Iterate ``count`` images (after 5 warm-up batches) and return the rate."""
    iterator = iter(batches)
    for _ in range(5):
        next(iterator)
    seen, started = 0, time.perf_counter()
    while seen < count:
        seen += int(next(iterator)[1].shape[0])
    return seen / (time.perf_counter() - started)


@contextmanager
def _batches(dataset_url: str, reader: str, reader_workers: int = 2):
    """What a worker trains on (one shard of one), shuffled, batched, prefetched.

    ``pipeline``: the training input (batch reader, TensorFlow decodes the stored PNGs);
    ``rows``: Petastorm's row reader (it decodes each image in Python) + make_petastorm_dataset.
    """
    import tensorflow as tf

    from pipeline.datasets.features import feature_of
    from pipeline.datasets.manifest import open_version
    from pipeline.datasets.reader import tf_dataset, training_stream
    from pipeline.train.inputs import training_examples

    _, manifest = open_version(dataset_url)
    if reader == "pipeline":
        stream = training_examples(tf, dataset_url, manifest, 0, 1, seed=1,
                                   reader_workers=reader_workers)
    else:
        stream = training_stream(dataset_url, "train", ("image", "label"), shard=0,
                                 shard_count=1, seed=1, reader_workers=reader_workers)
    with stream as source:
        shape = feature_of(manifest).shape
        examples = source if reader == "pipeline" else tf_dataset(source).map(
            lambda row: (tf.reshape(tf.cast(row.image, tf.float32), shape),
                         tf.one_hot(row.label, 10)))
        yield manifest, examples.shuffle(1024, seed=1).batch(BATCH).prefetch(tf.data.AUTOTUNE)


def step_reader(dataset_url: str, count: int, reader: str) -> dict:
    with _batches(dataset_url, reader) as (_, batches):
        return {"images_per_s": _images_per_s(batches, count)}


def step_directory(raw: Path, count: int) -> dict:
    import tensorflow as tf

    batches = tf.keras.utils.image_dataset_from_directory(
        raw, labels="inferred", label_mode="categorical", color_mode="grayscale",
        image_size=(28, 28), batch_size=BATCH, shuffle=True, seed=1).repeat()
    return {"images_per_s": _images_per_s(batches.prefetch(tf.data.AUTOTUNE), count)}


def _model(tf, manifest, wrap=lambda optimizer: optimizer):
    """The pipeline's CNN with Adam (``wrap``: e.g. Horovod's DistributedOptimizer)."""
    from pipeline.config import load_config
    from pipeline.train.model import build_model
    from pipeline.train.optim import make_loss

    cfg = load_config().train
    model = build_model("image_cnn", manifest, cfg)
    model.compile(optimizer=wrap(tf.keras.optimizers.Adam(cfg.learning_rate)),
                  loss=make_loss(cfg.loss), metrics=["accuracy"])
    return model


def _epoch_timer(tf, times: list[float]):
    """A Keras callback appending each epoch's wall time to ``times``."""

    class Timer(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.started)

    return Timer()


def step_consume(source: str, dataset_url: str, steps: int, threads: int) -> dict:
    """The CNN's training rate (1 process) on synthetic batches or on the Petastorm reader."""
    import tensorflow as tf

    _limit_threads(tf, threads)
    times: list[float] = []
    with _batches(dataset_url, "pipeline") as (manifest, batches):
        if source == "synthetic":
            x, y = next(iter(batches))
            batches = tf.data.Dataset.from_tensors((x, y)).repeat()
        model = _model(tf, manifest)
        model.fit(batches, steps_per_epoch=steps, epochs=2,
                  callbacks=[_epoch_timer(tf, times)], verbose=0)
    return {"images_per_s": steps * BATCH / times[-1]}  # the second epoch: warm


def step_plain_horovod(dataset_url: str, workers: str, work: Path) -> dict:
    """The plain alternative to ``pipeline train``: ``horovodrun -np workers`` running
    ``plain_rank`` (global images/s of epoch 2, from rank 0's file)."""
    out_file = Path(tempfile.mkdtemp(prefix="bench-plain-")) / "rate.json"
    horovodrun = Path(sys.executable).with_name("horovodrun")
    done = subprocess.run([str(horovodrun), "-np", workers, "--gloo", sys.executable, __file__,
                           "--work", str(work), "--step", "plain_rank", "--arg", str(out_file)],
                          capture_output=True, text=True, cwd=REPO, check=False)
    if done.returncode != 0:
        raise SystemExit(f"horovodrun failed:\n{done.stderr[-3000:]}")
    return json.loads(out_file.read_text())


def plain_rank(dataset_url: str, out_file: str) -> None:
    """One rank of the plain Horovod loop: the CNN with DistributedOptimizer and the initial
    broadcast, 1 thread, ``train.batch_size`` and ``pipeline train``'s steps per epoch, on one
    synthetic batch in memory; rank 0 writes the rate."""
    import horovod.tensorflow.keras as hvd
    import tensorflow as tf

    from pipeline.config import load_config
    from pipeline.datasets.manifest import open_version
    from pipeline.train.worker import steps_per_epoch

    hvd.init()
    _limit_threads(tf, 1)
    _, manifest = open_version(dataset_url)
    batch = load_config().train.batch_size
    steps = steps_per_epoch(manifest.splits["train"].rows, batch, hvd.size())
    x = tf.random.uniform((batch, 28, 28, 1), seed=hvd.rank())
    y = tf.one_hot(tf.random.uniform((batch,), maxval=10, dtype=tf.int32, seed=1), 10)
    model, times = _model(tf, manifest, hvd.DistributedOptimizer), []
    model.fit(tf.data.Dataset.from_tensors((x, y)).repeat(), steps_per_epoch=steps, epochs=2,
              callbacks=[hvd.callbacks.BroadcastGlobalVariablesCallback(0),
                         _epoch_timer(tf, times)], verbose=0)
    if hvd.rank() == 0:
        Path(out_file).write_text(json.dumps(
            {"images_per_s": steps * batch * hvd.size() / times[-1]}))


def step_horovod(dataset_url: str, workers: str, precision: str) -> dict:
    """Our training job with ``workers`` processes of 1 thread at ``precision``: global
    samples/s of epoch 2 and the validation accuracy."""
    from mlflow.tracking import MlflowClient

    from pipeline.config import load_config
    from pipeline.train.job import train

    work = Path(tempfile.mkdtemp(prefix="bench-hvd-"))
    cfg = load_config(overrides=[
        f"train.workers={workers}", "launch.threads_per_worker=1", "train.epochs=2",
        "train.schedule.warmup_epochs=0", f"train.precision={precision}",
        f"mlflow.tracking_uri=sqlite:///{work / 'm.db'}",
        f"mlflow.artifact_root={work / 'art'}", f"train.checkpoint_dir={work / 'ckpt'}"])
    result = train(cfg, dataset_url)
    history = MlflowClient(cfg.mlflow.tracking_uri).get_metric_history(result.run_id,
                                                                       "samples_per_s")
    return {"images_per_s": max(history, key=lambda m: m.step).value,
            "val_accuracy": result.val_accuracy}




def _sixteen_bit_flags() -> list[str]:
    """The CPU flags of native 16-bit float arithmetic (Linux's /proc/cpuinfo)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return [flag for flag in ("avx512_bf16", "amx_bf16", "avx512_fp16") if flag in flags]


PRECISIONS = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def precision_table(results: dict[str, dict]) -> list[str]:
    """Per ``train.precision``: speed, its ratio to float32 and the validation accuracy."""
    base = results["fp32"]["images_per_s"]
    return [f"| train.precision (2 processes x 1 thread, {PRECISION_IMAGES:,} images) | "
            "images/s | / float32 | val accuracy |",
            "|---|---|---|---|",
            *[f"| {precision} | {results[key]['images_per_s']:,.0f} | "
              f"{results[key]['images_per_s'] / base:.2f} | {results[key]['val_accuracy']:.4f} |"
              for key, precision in PRECISIONS.items()], ""]


def report(count: int, results: dict[str, dict]) -> str:
    rates = {key: result["images_per_s"] for key, result in results.items()}

    def ratio(a: str, b: str) -> float:
        return rates[a] / rates[b]

    rows = [
        ("training input / image_dataset_from_directory", ratio("pipeline", "directory"),
         ">= 1.0"),
        ("training input / CNN consumption (synthetic)", ratio("pipeline", "synthetic"),
         ">= 2.0"),
        ("CNN on the reader / CNN on synthetic data", ratio("real", "synthetic"), ">= 0.9"),
        ("Horovod 2x1 thread / (2 x Horovod 1x1 thread)",
         rates["hvd2"] / (2 * rates["hvd1"]), ">= 0.85"),
        ("pipeline train / plain horovodrun loop, 1 process", ratio("hvd1", "plain1"),
         ">= 0.95"),
        ("pipeline train / plain horovodrun loop, 2 processes", ratio("hvd2", "plain2"),
         ">= 0.9"),
        ("plain horovodrun loop, 2 processes / 1 process", ratio("plain2", "plain1"), "-"),
    ]
    names = {
        "rows": "Petastorm row reader (decodes in Python) -> make_petastorm_dataset",
        "pipeline": "training input: Petastorm batch reader, PNG decoded by tf.data",
        "directory": "tf.keras.utils.image_dataset_from_directory (same PNG files)",
        "synthetic": "CNN training, one in-memory batch repeated, 1 thread",
        "real": "CNN training on the training input, 1 thread",
        "hvd1": "pipeline train, Horovod 1 process x 1 thread",
        "hvd2": "pipeline train, Horovod 2 processes x 1 thread",
        "plain1": "plain horovodrun Keras loop, 1 process x 1 thread (synthetic, in memory)",
        "plain2": "plain horovodrun Keras loop, 2 processes x 1 thread (synthetic, in memory)",
    }
    precision = (f"16-bit arithmetic this CPU reports: {', '.join(_sixteen_bit_flags()) or 'none'}"
                 " (of avx512_bf16, amx_bf16, avx512_fp16). Mixed precision pays off where the "
                 "hardware computes in 16 bits (float16 on GPUs, bfloat16 on TPUs and AMX "
                 "CPUs); the rows say what a user gets here, and the validation accuracy after "
                 "the same epochs shows that each setting trains.")
    return "\n".join([
        "# Training input and scaling benchmark", "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"{platform.machine()}, Python {platform.python_version()}. The 60,000 Fashion-MNIST "
        f"training images as 28x28 PNG files and as a dataset version (90% train); readers "
        f"timed over {count:,} images after 5 warm-up batches of {BATCH}; training rates from "
        f"the second (warm) epoch.", "",
        "| path | images/s |", "|---|---|",
        *[f"| {names[key]} | {rates[key]:,.0f} |" for key in names], "",
        "| ratio | value | goal |", "|---|---|---|",
        *[f"| {name} | {value:.2f} | {goal} |" for name, value, goal in rows], "",
        *precision_table(results), precision, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000, help="images timed per reader")
    parser.add_argument("--steps", type=int, default=200, help="training steps timed")
    parser.add_argument("--work", type=Path, default=REPO / "data" / "bench")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--arg", help=argparse.SUPPRESS)
    args = parser.parse_args()
    raw, dataset_url = prepare(args.work)
    if args.step:
        from pipeline.logs import setup_logging

        setup_logging()
        result = {
            "reader": lambda: step_reader(dataset_url, args.images, args.arg),
            "directory": lambda: step_directory(raw, args.images),
            "consume": lambda: step_consume(args.arg, dataset_url, args.steps, threads=1),
            "horovod": lambda: step_horovod(dataset_url, *args.arg.split(":")),
            "plain_horovod": lambda: step_plain_horovod(dataset_url, args.arg, args.work),
            "plain_rank": lambda: plain_rank(dataset_url, args.arg),
            "precision": lambda: step_horovod(prepare_subset(args.work, raw), "2", args.arg),
        }[args.step]()
        print(json.dumps(result or {}))
        return
    common = ["--images", str(args.images), "--steps", str(args.steps), "--work", str(args.work)]
    plan = {"rows": ("reader", "rows"), "pipeline": ("reader", "pipeline"),
            "directory": ("directory", ""),
            "synthetic": ("consume", "synthetic"), "real": ("consume", "real"),
            "hvd1": ("horovod", "1:float32"), "plain1": ("plain_horovod", "1"),
            "hvd2": ("horovod", "2:float32"), "plain2": ("plain_horovod", "2"),
            **{key: ("precision", precision) for key, precision in PRECISIONS.items()}}
    prepare_subset(args.work, raw)  # once, before the steps that read it
    results = {}
    for key, (step, arg) in plan.items():
        results[key] = run_step(__file__, *common, "--step", step, "--arg", arg)
        print(f"{key}: {results[key]['images_per_s']:,.0f} images/s", flush=True)
    text = report(args.images, results)
    target = REPO / "benchmarks" / "results" / "train.md"
    target.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
