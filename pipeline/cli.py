"""The ``pipeline`` command. Parses arguments, loads the configuration once, calls the library."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pipeline import __version__
from pipeline.config import Config, ConfigError, load_config
from pipeline.errors import PipelineError
from pipeline.logs import setup_logging

log = logging.getLogger("pipeline")

EXIT_FAILURE = 1
EXIT_USAGE = 2


def _config_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE",
                        help="YAML file merged over conf/default.yaml")
    common.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted configuration overrides, e.g. train.epochs=3")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _config_options()
    parser = argparse.ArgumentParser(
        prog="pipeline",
        description="Raw images -> Spark ingest -> Petastorm dataset -> Horovod training -> "
                    "MLflow.")
    parser.add_argument("--version", action="version", version=f"pipeline {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("doctor", parents=[common], help="check Java, Spark, Horovod and MLflow",
                        description="Check that every stage can run here; exits 1 naming what "
                                    "is wrong.")

    ingest = commands.add_parser("ingest", help="raw files -> a dataset version",
                                 description="Turn raw files into a Petastorm dataset version.")
    kinds = ingest.add_subparsers(dest="kind", required=True, metavar="KIND")
    images = kinds.add_parser("images", parents=[common], help="a folder of <label>/<image> files",
                              description="Ingest ROOT/<label>/<image> files into train/val/test "
                                          "Petastorm datasets with a manifest.")
    images.add_argument("--input", required=True, metavar="PATH", help="folder or URI of images")
    images.add_argument("--output", required=True, metavar="PATH",
                        help="where the dataset version is written")
    images.add_argument("--mode", choices=("error", "overwrite"), default="error",
                        help="what to do when the output exists (default: error)")

    train = commands.add_parser("train", parents=[common], help="train on a dataset version",
                                description="Train the image CNN with Horovod on a dataset "
                                            "version and record the run in MLflow.")
    train.add_argument("--data", required=True, metavar="PATH", help="a dataset version")
    train.add_argument("--workers", type=int, metavar="N",
                       help="Horovod processes (default: train.workers)")

    commands.add_parser("demo", parents=[common], help="the whole pipeline on bundled digits",
                        description="Write the bundled MNIST digits as PNG files, ingest them "
                                    "with Spark, train with 2 Horovod workers, log to MLflow.")
    return parser


def _load(args: argparse.Namespace) -> Config:
    overrides = list(args.overrides)
    if getattr(args, "workers", None) is not None:
        overrides.append(f"train.workers={args.workers}")
    return load_config(args.config, overrides)


def _doctor(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.doctor import format_table, run_checks

    results = run_checks(cfg)
    print(format_table(results))
    failed = [r.name for r in results if not r.ok]
    if failed:
        print(f"doctor: failed: {', '.join(failed)}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


def _ingest_images(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.ingest.image_job import ingest_images, summary_line
    from pipeline.spark import get_spark

    spark = get_spark(cfg.spark, app_name="pipeline-ingest-images")
    try:
        manifest = ingest_images(spark, cfg, args.input, args.output, mode=args.mode)
    finally:
        spark.stop()
    print(f"dataset version {args.output}: {summary_line(manifest)}")
    print(f"fingerprint {manifest.fingerprint}")
    return 0


def _train(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.train.job import train

    result = train(cfg, args.data)
    print(f"run id {result.run_id}")
    print(f"validation accuracy {result.val_accuracy:.4f}")
    return 0


def _demo(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.demo import run_demo, ui_command

    result = run_demo(cfg)
    print(f"dataset version {result.dataset_dir} (fingerprint {result.manifest.fingerprint[:12]})")
    print(f"MLflow run id {result.training.run_id}")
    print(f"validation accuracy {result.training.val_accuracy:.4f}")
    print(f"open the MLflow UI: {ui_command(cfg)}")
    return 0


HANDLERS = {"doctor": _doctor, "ingest": _ingest_images, "train": _train, "demo": _demo}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(verbose=args.verbose)
    try:
        cfg = _load(args)
    except ConfigError as exc:
        print(f"pipeline: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return HANDLERS[args.command](cfg, args)
    except PipelineError as exc:
        print(f"pipeline {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("pipeline: interrupted", file=sys.stderr)
        return 130
