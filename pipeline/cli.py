"""The ``pipeline`` command. Parses arguments, loads the configuration once, calls the library.

Exit statuses belong to the error classes (``exit_code``; README.md, "Exit codes"). With
``--json`` a command prints one JSON object on stdout, built from the result the library
returned (``outcome_json``), or ``{"error": ...}`` (``error_json``); logs stay on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NoReturn

from pipeline import __version__, storage
from pipeline.config import Config, load_config
from pipeline.errors import PipelineError, QuarantineGateError, UsageError, first_line
from pipeline.logs import setup_logging

log = logging.getLogger("pipeline")

EXIT_FAILURE = PipelineError.exit_code
EXIT_USAGE = 2  # argparse's status for a wrong command line; UsageError and ConfigError share it
EXIT_LOCKED = 75  # LockHeldError.exit_code, EX_TEMPFAIL: schedulers treat it as a skip
EXIT_INTERRUPTED = 130  # 128 + SIGINT: Ctrl-C, or SIGTERM from a scheduler

JSON_HELP = "print the outcome as one JSON object on stdout (logs stay on stderr)"


# --- the parser ------------------------------------------------------------------------------

class _UsageExit(SystemExit):
    """argparse's exit on a wrong command line, keeping the message for ``--json``."""

    def __init__(self, message: str) -> None:
        super().__init__(EXIT_USAGE)
        self.message = message


class _Parser(argparse.ArgumentParser):
    """argparse's parser; a usage error prints the same, and says what it was to ``main``."""

    def error(self, message: str) -> NoReturn:
        """Print usage and message as argparse does, then exit 2 keeping the message."""
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise _UsageExit(f"{self.prog}: {message}")


def _config_options() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--config", metavar="FILE",
                        help="YAML file merged over conf/default.yaml")
    common.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted configuration overrides, e.g. train.epochs=3")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return common


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, metavar="URI",
                        help="where the dataset version is written")
    parser.add_argument("--mode", choices=("error", "overwrite", "new-version"), default="error",
                        help="when the output exists: fail (default), replace it, or add a "
                             "new version vNNNN inside it")
    parser.add_argument("--max-bad-fraction", type=float, default=1.0, metavar="F",
                        help="exit with status 3 when more than this share of the inputs is "
                             "quarantined (default 1.0: never)")


def _model_uri_option(parser: argparse.ArgumentParser,
                      logged: str = "runs:/<run id>/model") -> None:
    parser.add_argument("--model", dest="model_uri", required=True, metavar="MODEL_URI",
                        help=f"{logged}, models:/<name>/<version> or models:/<name>@<alias>")


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


class _SubmitArguments(argparse.Action):
    """What follows ``pipeline submit JOB``: ours, spark-submit's, and (after ``--``) the job's."""

    def __call__(self, parser, namespace, values, option_string=None):
        from pipeline.submit import SubmitError, parse_arguments

        tokens = list(values)
        head = tokens[:tokens.index("--")] if "--" in tokens else tokens
        if "-h" in head or "--help" in head:
            parser.print_help()
            parser.exit()
        try:
            parsed = parse_arguments(tokens)
        except SubmitError as exc:
            parser.error(str(exc))
        if not parsed.master:
            parser.error("--master URL is required (spark://host:7077, yarn, "
                         "k8s://https://host:6443, local[*])")
        setattr(namespace, self.dest, parsed)
        # the configuration is loaded (and validated) here before anything is submitted
        namespace.config, namespace.overrides = parsed.config, parsed.overrides


def _add_doctor(commands, common: argparse.ArgumentParser) -> None:
    from pipeline.doctor import CHECKS

    doctor = commands.add_parser("doctor", parents=[common],
                                 help="check Java, Spark, Horovod and MLflow",
                                 description="Check that every stage can run here; exits 1 "
                                             "naming what is wrong.")
    doctor.add_argument("--check", action="append", choices=CHECKS, metavar="NAME",
                        help=f"run only this check (repeatable; one of {', '.join(CHECKS)}; "
                             "default: all)")


def _add_ingest(commands, common: argparse.ArgumentParser) -> None:
    ingest = commands.add_parser("ingest", help="raw files -> a dataset version",
                                 description="Turn raw files into a Petastorm dataset version.")
    kinds = ingest.add_subparsers(dest="kind", required=True, metavar="KIND")
    images = kinds.add_parser(
        "images", parents=[common], help="a folder of <label>/<image> files, or a listing",
        description="Ingest ROOT/<label>/<image> files (or the path,label rows of a CSV/JSONL "
                    "listing) into train/val/test Petastorm datasets, a quarantine table and a "
                    "manifest. Exit status 3: too many inputs were quarantined.")
    source = images.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", metavar="URI", help="folder of label folders (file://, "
                                                        "hdfs://, s3://, s3a://, or a path)")
    source.add_argument("--manifest", metavar="FILE",
                        help="CSV or JSONL listing with path,label (paths relative to it)")
    _output_options(images)
    _json_option(images)

    text = kinds.add_parser(
        "text", parents=[common], help="label folders of .txt files, CSV, JSONL or Parquet",
        description="Ingest raw text into train/val/test Petastorm datasets of token ids with "
                    "a vocabulary, a quarantine table and a manifest. Exit status 3: too many "
                    "inputs were quarantined.")
    text.add_argument("--input", required=True, metavar="URI",
                      help="a folder or file (file://, hdfs://, s3://, s3a://, or a path)")
    text.add_argument("--format", choices=("auto", "folders", "csv", "jsonl", "parquet"),
                      default="auto", help="how the input is laid out (default: decide from "
                                           "the files, and say what was chosen)")
    text.add_argument("--text-col", default="text", metavar="C",
                      help="the text column or key (CSV, JSONL, Parquet; default: text)")
    text.add_argument("--label-col", default="label", metavar="C",
                      help="the label column or key (default: label)")
    _output_options(text)
    _json_option(text)


def _add_train(commands, common: argparse.ArgumentParser) -> None:
    train = commands.add_parser("train", parents=[common], help="train on a dataset version",
                                description="Train a model with Horovod on a dataset version "
                                            "(or the latest in a folder of versions) and "
                                            "record the run in MLflow.")
    train.add_argument("--data", required=True, metavar="PATH", help="a dataset version")
    train.add_argument("--model", choices=("auto", "image_cnn", "text_cnn", "text_rnn"),
                       help="default: train.model (auto: image_cnn for images, text_cnn for "
                            "text)")
    train.add_argument("--workers", type=int, metavar="N",
                       help="Horovod processes (default: train.workers)")
    train.add_argument("--launcher", choices=("local", "spark", "hosts"),
                       help="local: processes here; spark: Spark tasks on the executors; "
                            "hosts: over ssh on --hosts (default: launch.launcher)")
    train.add_argument("--hosts", metavar="H:N,...",
                       help="for --launcher hosts: host:slots list, e.g. node1:2,node2:2")
    train.add_argument("--epochs", type=int, metavar="E", help="default: train.epochs")
    train.add_argument("--batch-size", type=int, metavar="B",
                       help="per worker (default: train.batch_size)")
    train.add_argument("--resume", action="store_true",
                       help="continue the newest failed or killed run of this dataset and model "
                            "after its last checkpoint, logging into the same MLflow run")
    train.add_argument("--run-id", metavar="ID",
                       help="with --resume: the run to continue")
    train.add_argument("--sweep", metavar="FILE",
                       help="a grid, random or tpe search (YAML, see pipeline/sweep.py): one "
                            "parent run, one nested run per trial, the best one registered")
    _json_option(train)


def _add_evaluate(commands, common: argparse.ArgumentParser) -> None:
    evaluate = commands.add_parser(
        "evaluate", parents=[common], help="score a model on a dataset split",
        description="Read every row of a split once through a logged or registered model; "
                    "log accuracy, loss, the confusion matrix and per-class metrics to an "
                    "evaluation run linked to the model version.")
    _model_uri_option(evaluate)
    evaluate.add_argument("--data", required=True, metavar="PATH", help="a dataset version")
    evaluate.add_argument("--split", default="test", help="default: test")
    _json_option(evaluate)


def _add_explain(commands, common: argparse.ArgumentParser) -> None:
    explain = commands.add_parser(
        "explain", parents=[common], help="what a model looks at in raw files",
        description="Prepare raw image or text files as ingest prepared the model's dataset, "
                    "predict them and explain each prediction: Grad-CAM and integrated-"
                    "gradients grids (images) or token attributions (text), with "
                    "predictions.json listing every file's label or the reason it was set "
                    "aside.")
    _model_uri_option(explain)
    explain.add_argument("--input", required=True, metavar="URI",
                         help="a raw file or a folder of them (searched recursively)")
    explain.add_argument("--output", required=True, metavar="URI",
                         help="the folder the figures and predictions.json are written to")
    explain.add_argument("--max-files", type=int, default=64, metavar="N",
                         help="refuse inputs of more files (one figure row each; default: 64)")
    _json_option(explain)


def _add_promote(commands, common: argparse.ArgumentParser) -> None:
    promote = commands.add_parser(
        "promote", parents=[common], help="challenger becomes champion if it is better",
        description="Evaluate the 'challenger' and 'champion' versions of a registered model on "
                    "the same split; move 'champion' to the challenger only when it wins by "
                    "registry.margin on registry.metric and is blessed (thresholds, no slice "
                    "clearly worse, served over HTTP with the same answers). The decision, "
                    "every check and number are written to the version's tags, description "
                    "and model card.")
    promote.add_argument("--model", dest="model_name", required=True, metavar="NAME",
                         help="the registered model")
    promote.add_argument("--data", metavar="PATH",
                         help="dataset version to compare on (default: the challenger's)")
    promote.add_argument("--split", default="test", help="default: test")
    _json_option(promote)


def _add_predict(commands, common: argparse.ArgumentParser) -> None:
    predict = commands.add_parser(
        "predict", parents=[common], help="batch predictions for raw files with Spark",
        description="Apply a logged model to raw image or text files (label folders optional) "
                    "with the preprocessing of its dataset version; write Parquet rows of "
                    "source, true_label, predicted_label, score, probabilities, and the reason "
                    "for inputs ingest would quarantine.")
    _model_uri_option(predict)
    predict.add_argument("--input", required=True, metavar="URI",
                         help="a folder or a file of raw inputs, or a dataset version")
    predict.add_argument("--output", required=True, metavar="URI", help="Parquet output")
    predict.add_argument("--mode", choices=("error", "overwrite"), default="error",
                         help="when the output exists: fail (default) or replace it")
    _json_option(predict)


def _add_retrain(commands, common: argparse.ArgumentParser) -> None:
    retrain = commands.add_parser(
        "retrain", parents=[common], help="new raw files -> new version -> challenger -> promote",
        description="Find raw files new since the last dataset version in retrain.output, build "
                    "the next version by the same rules (old inputs keep their split), train a "
                    "challenger, evaluate it and the champion on the test split and promote by "
                    "registry.metric/margin and the blessing; one MLflow run with a nested run "
                    "per step. Each new version is validated first (validation.*). Exits 0 when "
                    "there is nothing new, 4 when the new data failed validation (nothing "
                    "trained), 75 when another retrain holds the lock. Safe to rerun after a "
                    "crash: it finishes what was left.")
    _json_option(retrain)


def _add_runs(commands, common: argparse.ArgumentParser) -> None:
    runs = commands.add_parser("runs", help="look at training runs",
                               description="Look at the training runs in the MLflow store.")
    actions = runs.add_subparsers(dest="action", required=True, metavar="ACTION")
    compare = actions.add_parser(
        "compare", parents=[common], help="the best runs by a metric, and their UI page",
        description="A table of the best training runs with key parameters and metrics, and "
                    "the URL of the MLflow UI page comparing them (start it with 'pipeline ui').")
    compare.add_argument("--experiment", help="default: mlflow.experiment")
    compare.add_argument("--metric", default="val_accuracy",
                         help="rank by this metric (default: val_accuracy; *loss: lower wins)")
    compare.add_argument("--top", type=int, default=5, metavar="N", help="default: 5")


def _add_datasets(commands, common: argparse.ArgumentParser) -> None:
    datasets = commands.add_parser("datasets", help="look after dataset folders",
                                   description="Look after dataset outputs and version folders.")
    actions = datasets.add_subparsers(dest="action", required=True, metavar="ACTION")
    gc = actions.add_parser(
        "gc", parents=[common], help="list (and delete) what crashed writers left",
        description="List staging folders, claimed but uncommitted versions and generations no "
                    "manifest points at, in and beside OUTPUT (a dataset output or a folder of "
                    "versions); none of them is ever read. --delete removes those untouched for "
                    "--older-than hours (a live writer keeps writing, so its files stay young).")
    gc.add_argument("output", metavar="OUTPUT", help="a dataset output or folder of versions")
    gc.add_argument("--delete", action="store_true", help="delete what is old enough")
    gc.add_argument("--older-than", type=float, default=24.0, metavar="HOURS",
                    help="with --delete: untouched for this long (default: 24)")


def _add_ui(commands, common: argparse.ArgumentParser) -> None:
    ui = commands.add_parser(
        "ui", parents=[common], help="serve the MLflow UI on the store",
        description="Run 'mlflow server' on mlflow.tracking_uri, bound to "
                    "mlflow.ui_host:mlflow.ui_port (127.0.0.1:5000 by default). Any other host "
                    "needs --expose; --auth puts MLflow's basic-auth app in front.")
    ui.add_argument("--expose", action="store_true",
                    help="allow an mlflow.ui_host other than loopback (prints a warning)")
    ui.add_argument("--auth", action="store_true",
                    help="every request needs a user; the admin is MLFLOW_TRACKING_USERNAME "
                         "with MLFLOW_TRACKING_PASSWORD; users in mlflow.auth_database_uri")


def _add_serve(commands, common: argparse.ArgumentParser) -> None:
    serve = commands.add_parser(
        "serve", parents=[common], help="answer raw images or texts over HTTP",
        description="Run 'mlflow models serve' on 127.0.0.1 for a raw-input model (any model "
                    "URI: models:/NAME@champion, runs:/RUN/raw_model) in this environment. "
                    "POST /invocations {\"dataframe_split\": {\"columns\": [\"image\"], "
                    "\"data\": [[\"<base64 file bytes>\"]]}} (or a \"text\" column) answers "
                    "label, confidence, probabilities and error per row.")
    _model_uri_option(serve, "runs:/<run id>/raw_model")
    serve.add_argument("--port", type=int, default=5001, help="default: 5001")


def _add_export(commands, common: argparse.ArgumentParser) -> None:
    export = commands.add_parser(
        "export", parents=[common], help="write a model as a TensorFlow SavedModel or ONNX",
        description="Write the Keras network of a logged or registered model for other "
                    "servers: a TensorFlow SavedModel with a serving_default signature, or an "
                    "ONNX graph (model.onnx). Input 'inputs': the model's tensors; output "
                    "'probabilities'.")
    _model_uri_option(export)
    export.add_argument("--format", choices=("savedmodel", "onnx"), default="savedmodel",
                        help="savedmodel (default) or onnx")
    export.add_argument("--output", required=True, metavar="URI", help="a new folder")
    _json_option(export)


def _add_validate(commands, common: argparse.ArgumentParser) -> None:
    validate = commands.add_parser(
        "validate", parents=[common], help="check a dataset version for drift and anomalies",
        description="Compare a dataset version's statistics with a reference version's (drift "
                    "per statistic, labels come or gone) and/or with expectations; print the "
                    "findings, write an HTML report, exit 4 when one is an error. With "
                    "--predictions and --model, compare what 'pipeline predict' recorded of a "
                    "batch with the model's training data. With --infer-expectations, write "
                    "the expectations of --data to a YAML file.")
    validate.add_argument("--data", metavar="URI",
                          help="a dataset version (or a folder of versions: the newest)")
    validate.add_argument("--predictions", metavar="OUTPUT", help="what 'pipeline predict' "
                          "wrote: compared with the data of --model")
    validate.add_argument("--model", dest="model_uri", metavar="MODEL_URI",
                          help="with --predictions: the model that predicted them")
    validate.add_argument("--reference", metavar="URI", help="the version to compare with")
    validate.add_argument("--expectations", metavar="FILE",
                          help="a YAML of expectations (default: validation.expectations)")
    validate.add_argument("--infer-expectations", metavar="FILE",
                          help="write the expectations --data meets to FILE, and stop")
    validate.add_argument("--report", metavar="FILE", help="the HTML report (default: "
                          "<data_dir>/reports/validation-<dataset>.html)")
    _json_option(validate)


def _add_demo(commands, common: argparse.ArgumentParser) -> None:
    commands.add_parser("demo", parents=[common], help="the whole pipeline on bundled digits",
                        description="Write the bundled MNIST digits as PNG files and the "
                                    "Rotten Tomatoes snippets as .txt files, ingest both with "
                                    "Spark, train the image CNN with 2 Horovod workers, log "
                                    "to MLflow.")


SUBMIT_EPILOG = (
    "options before '--':\n"
    "  --master URL       spark://host:7077, yarn, k8s://https://host:6443, local[*] (required)\n"
    "  --config FILE      YAML merged over conf/default.yaml; shipped with --files "
    "(cluster deploy mode too)\n"
    "  key=value          configuration overrides, validated here and passed to the job\n"
    "  --build-dir DIR    where the zip is built (default: build/submit)\n"
    "  --dry-run          print the command and the archive, run nothing\n"
    "  anything else      spark-submit's options, passed through in order "
    "(--deploy-mode, --conf k=v, ...)\n"
    "after '--': the job's own arguments, e.g. --data PATH train.epochs=3\n\n"
    "example: pipeline submit train --master spark://host:7077 "
    "--executor-memory 6g -- --data hdfs:///datasets/digits")


def _add_submit(commands, common: argparse.ArgumentParser) -> None:
    submit = commands.add_parser(
        "submit", help="run a jobs/ entry point on a cluster with spark-submit",
        usage="pipeline submit JOB --master URL [spark-submit options] [--config FILE] "
              "[key=value ...] [--build-dir DIR] [--dry-run] [-- job arguments]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Package the pipeline library as a zip (build/submit/pipeline-<hash>.zip), "
                    "ship it and the configuration with the job,\nand run the installed pyspark's "
                    "spark-submit. Exits with spark-submit's status.",
        epilog=SUBMIT_EPILOG)
    submit.add_argument("job", metavar="JOB", help="an entry point in jobs/ (e.g. train)")
    submit.add_argument("submission", nargs=argparse.REMAINDER, action=_SubmitArguments,
                        metavar="...", help=argparse.SUPPRESS)
    submit.set_defaults(config=None, overrides=[], verbose=False)


def build_parser() -> argparse.ArgumentParser:
    """The ``pipeline`` parser: one ``_add_<command>`` per subcommand, in the order of --help."""
    common = _config_options()
    parser = _Parser(
        prog="pipeline",
        description="Raw images -> Spark ingest -> Petastorm dataset -> Horovod training -> "
                    "MLflow.")
    parser.add_argument("--version", action="version", version=f"pipeline {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_doctor, _add_ingest, _add_train, _add_evaluate, _add_explain, _add_promote,
                _add_predict, _add_retrain, _add_validate, _add_runs, _add_datasets, _add_ui,
                _add_serve, _add_export, _add_demo, _add_submit):
        add(commands, common)
    return parser


# --- JSON outcomes ---------------------------------------------------------------------------

def _fields(obj: Any) -> dict[str, Any]:
    return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def _manifest_json(manifest: Any) -> dict[str, Any]:
    """An ingested version: where it is and what happened to every input, not the schema."""
    from pipeline.ingest.report import bad_fraction

    return {"version_uri": manifest.extra.get("version_uri"), "kind": manifest.kind,
            "source": manifest.source, "discovered": manifest.discovered,
            "accepted": {name: info.rows for name, info in manifest.splits.items()},
            "quarantined": dict(manifest.quarantine), "bad_fraction": bad_fraction(manifest),
            "fingerprint": manifest.fingerprint}


def _model_ref_json(ref: Any) -> dict[str, Any]:
    return {"name": ref.name, "version": ref.version, "uri": ref.uri}


def _changes_json(changes: Any) -> dict[str, int]:
    """Counts, as the human summary gives them (the file lists can be long)."""
    return {"new": len(changes.new), "changed": len(changes.changed),
            "removed": len(changes.removed)}


def _evaluation_json(evaluation: Any) -> dict[str, Any]:
    """The evaluation's fields with its scores (rows, loss, accuracy, confusion) inline."""
    fields = _fields(evaluation)
    scores = fields.pop("scores")
    robustness = evaluation.robustness
    return {**fields, **scores, "robustness": robustness.metrics() if robustness else None}


def _sweep_json(sweep: Any) -> dict[str, Any]:
    """The trials with their values; a tpe search's study (null for grid and random)."""
    study = ({"name": sweep.study_name, "storage": sweep.study_storage, "pruned": sweep.pruned}
             if sweep.study_name else None)
    return {"sweep_run_id": sweep.parent_run_id,
            "trials": [{"values": jsonable(values), **jsonable(trial)}
                       for values, trial in sweep.trials],
            "best_run_id": sweep.best.run_id, "model_version": jsonable(sweep.model_version),
            "study": study}


# result classes that need more than their fields, by class name (no import of heavy modules)
_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "Manifest": _manifest_json, "ModelRef": _model_ref_json, "Changes": _changes_json,
    "Evaluation": _evaluation_json, "SweepResult": _sweep_json}


def jsonable(value: Any) -> Any:
    """``value`` in JSON types (dataclasses by field or converter, numpy as lists, NaN as null)."""
    convert = _CONVERTERS.get(type(value).__name__)
    if convert is not None:
        return convert(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _fields(value)
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(item) for item in value]
    if hasattr(value, "tolist"):  # numpy
        return jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float)):
        return value
    return str(value)


def outcome_json(result: Any) -> dict[str, Any]:
    """The object ``--json`` prints for the result dataclass a library function returned."""
    outcome = jsonable(result)
    if not isinstance(outcome, dict):
        raise TypeError(f"a command's result must be an object, not {type(result).__name__}")
    return outcome


def error_json(exc: BaseException, exit_code: int) -> dict[str, Any]:
    """The ``error`` member of a ``--json`` outcome: what failed and the exit status."""
    message = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
    return {"type": type(exc).__name__, "message": message, "exit_code": exit_code}


def _report(args: argparse.Namespace, result: Any, *lines: str) -> None:
    """Print ``lines`` for people, or keep ``result``'s object for ``main`` to print (--json)."""
    if getattr(args, "json", False):
        args.outcome = outcome_json(result)
    else:
        print(*lines, sep="\n")


@contextlib.contextmanager
def _stdout_to_stderr(active: bool) -> Iterator[None]:
    """Send stdout (also fd 1, which the JVM and Horovod's workers inherit) to stderr (--json)."""
    if not active:
        yield
        return
    sys.stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no descriptor 1 or 2: nothing else can write there either
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


# --- the commands ----------------------------------------------------------------------------

def _load(args: argparse.Namespace) -> Config:
    """The configuration: file, ``key=value`` arguments, then flags that stand for keys."""
    overrides = list(args.overrides)
    flags = {"workers": "train.workers", "model": "train.model", "launcher": "launch.launcher",
             "hosts": "launch.hosts", "epochs": "train.epochs", "batch_size": "train.batch_size"}
    for flag, key in flags.items():
        if getattr(args, flag, None) is not None:
            overrides.append(f"{key}={getattr(args, flag)}")
    cfg = load_config(args.config, overrides)
    # S3 settings reach every library and child process (Spark, Horovod, MLflow) this way
    storage.configure(cfg.storage.s3_endpoint_url, cfg.storage.s3_region)
    return cfg


def _doctor(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.doctor import CHECKS, format_table, run_checks

    results = run_checks(cfg, args.check or CHECKS)
    print(format_table(results))
    failed = [r.name for r in results if not r.ok]
    if failed:
        print(f"doctor: failed: {', '.join(failed)}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


def _ingest(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.datasets.commit import check_output
    from pipeline.ingest.report import bad_fraction, summary_table
    from pipeline.spark import get_spark

    if not 0.0 <= args.max_bad_fraction <= 1.0:
        raise UsageError("--max-bad-fraction must be between 0 and 1")
    check_output(storage.to_uri(args.output), args.mode)  # refused before a JVM starts
    spark = get_spark(cfg.spark, app_name=f"pipeline-ingest-{args.kind}")
    try:
        if args.kind == "images":
            from pipeline.ingest.image_job import ingest_images

            manifest = ingest_images(spark, cfg, args.input, args.output, mode=args.mode,
                                     listing_path=args.manifest)
        else:
            from pipeline.ingest.text_job import ingest_text

            manifest = ingest_text(spark, cfg, args.input, args.output, mode=args.mode,
                                   fmt=args.format, text_col=args.text_col,
                                   label_col=args.label_col)
    finally:
        spark.stop()
    _report(args, manifest, summary_table(manifest),
            f"dataset version {manifest.extra['version_uri']}",
            f"fingerprint {manifest.fingerprint}")
    share = bad_fraction(manifest)
    if share > args.max_bad_fraction:  # the version is committed: its quarantine can be read
        raise QuarantineGateError(
            f"{share:.1%} of the inputs were quarantined, more than --max-bad-fraction "
            f"{args.max_bad_fraction:.1%}; see the quarantine table")
    return 0


def _sweep(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.sweep import run_sweep

    if args.resume:
        raise UsageError("--sweep and --resume do not go together")
    swept = run_sweep(cfg, args.data, args.sweep)
    lines = [f"{trial.run_id}  {values}  val_accuracy {trial.val_accuracy:.4f}  "
             f"val_loss {trial.val_loss:.4f}"
             f"{f'  pruned after epoch {trial.pruned_epoch}' if trial.pruned_epoch else ''}"
             f"{'  <- best' if trial is swept.best else ''}"
             for values, trial in swept.trials]
    lines.append(f"sweep run id {swept.parent_run_id}, best run id {swept.best.run_id}")
    if swept.study_name:
        lines.append(f"study {swept.study_name} in {swept.study_storage} ({swept.pruned} of "
                     f"this run's trials pruned); the same command resumes it")
    if swept.model_version is not None:
        lines.append(f"registered {swept.model_version} as challenger")
    _report(args, swept, *lines)
    return 0


def _train(cfg: Config, args: argparse.Namespace) -> int:
    if args.run_id and not args.resume:
        raise UsageError("--run-id is only used with --resume")
    if args.sweep:
        return _sweep(cfg, args)
    from pipeline.train.job import train

    result = train(cfg, args.data, resume=(args.run_id or "latest") if args.resume else None,
                   register=cfg.registry.register_trained)
    lines = [f"run id {result.run_id}",
             f"epochs {result.initial_epoch + 1}-{result.initial_epoch + result.epochs_run} "
             f"of {cfg.train.epochs}, {result.steps_per_rank[0]} steps per worker",
             f"validation accuracy {result.val_accuracy:.4f}"]
    if result.model_version is not None:
        lines.append(f"registered {result.model_version} ({result.model_version.uri}) "
                     f"as challenger")
    _report(args, result, *lines)
    return 0


def _evaluate(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.evaluation.job import evaluate

    result = evaluate(cfg, args.model_uri, args.data, args.split)
    _report(args, result,
            f"{result.model or result.model_uri} on {args.split} ({result.scores.rows} rows): "
            f"accuracy {result.scores.accuracy:.4f}, loss {result.scores.loss:.4f}",
            *_review_lines(result.scores.review), *_robustness_lines(result.robustness),
            f"evaluation run id {result.run_id}")
    return 0


def _explain(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.evaluation.explain_files import explain_files

    result = explain_files(cfg, args.model_uri, args.input, args.output, args.max_files)
    _report(args, result,
            f"{result.inputs} files: {result.explained} explained, "
            f"{sum(result.quarantined.values())} set aside"
            + "".join(f"\n  {reason}: {n}" for reason, n in result.quarantined.items()),
            f"written to {result.output_uri}: {', '.join(result.written)}")
    return 0


def _robustness_lines(robustness) -> list[str]:
    """Accuracy under corruption for people: the mean, and the corruption that hurts most."""
    from pipeline.tracking import keys

    if robustness is None:
        return []
    numbers = robustness.metrics()
    worst = min(robustness.curves, key=lambda name: robustness.curves[name][-1])
    return [f"under corruption ({robustness.rows} rows): mean accuracy "
            f"{numbers[keys.ROBUSTNESS_MEAN]:.4f}, {numbers[keys.ROBUSTNESS_RELATIVE]:.2f} of "
            f"clean {robustness.clean:.4f}; worst: {worst} at severity 3, "
            f"{robustness.curves[worst][-1]:.4f}"]


def _review_lines(review) -> list[str]:
    """An evaluation's review for people: the numbers beyond accuracy and the worst slice."""
    if review is None:
        return []
    worst = review.worst_slice
    return [f"macro-F1 {review.macro_f1:.4f}, ROC-AUC {review.roc_auc:.4f}, calibration error "
            f"{review.ece:.4f}",
            f"worst slice: {worst[0]}={worst[1]}, accuracy {worst[2]['accuracy']:.4f} "
            f"({worst[2]['rows']} rows)" if worst else "worst slice: none with enough rows"]


def _promote(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.evaluation.promotion import promote

    result = promote(cfg, args.model_name, args.data, args.split)
    verdict = "promoted to champion" if result.decision.promote else "not promoted"
    _report(args, result, f"{result.challenger}: {verdict} ({result.decision.reason})")
    return 0


def _predict(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.inference.job import predict_files
    from pipeline.spark import get_spark

    spark = get_spark(cfg.spark, app_name="pipeline-predict")
    try:
        summary = predict_files(spark, cfg, args.model_uri, args.input, args.output, args.mode)
    finally:
        spark.stop()
    _report(args, summary,
            f"{summary.inputs} inputs: {summary.predicted} predicted, "
            f"{sum(summary.quarantined.values())} set aside"
            + "".join(f"\n  {reason}: {n}" for reason, n in summary.quarantined.items()),
            f"predictions {summary.output_uri}")
    return 0


def _retrain(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.retrain.workflow import retrain

    result = retrain(cfg)  # LockHeldError: exit 75, a skip for schedulers
    lines = [f"raw files: {result.changes.summary()}"]
    if result.dataset_url:
        lines.append(f"dataset version {result.dataset_url}{' (new)' if result.built else ''}")
    if result.training is not None:
        lines.append(f"training run id {result.training.run_id}, validation accuracy "
                     f"{result.training.val_accuracy:.4f}")
    if result.run_id:
        lines.append(f"retrain run id {result.run_id}")
    lines.append(result.summary)
    _report(args, result, *lines)
    return 0


def _runs(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.tracking.compare import best_runs, compare_url, format_table
    from pipeline.tracking.tracker import Tracker

    if args.top < 1:
        raise UsageError("--top must be at least 1")
    experiment_id, rows = best_runs(Tracker.from_config(cfg.mlflow), args.metric, args.top,
                                     args.experiment)
    print(format_table(rows, args.metric))
    print(f"compare in the MLflow UI: "
          f"{compare_url(cfg.mlflow.ui_url, experiment_id, [r.run_id for r in rows])}")
    return 0


def _datasets(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline import storage
    from pipeline.datasets.commit import delete_garbage, garbage

    found = garbage(storage.to_uri(args.output))
    deleted = delete_garbage(found, args.older_than * 3600) if args.delete else []
    for item in found:
        state = "deleted" if item in deleted else "kept"
        print(f"{item.uri}  {item.age_s / 3600:.1f} h  {state if args.delete else ''}  "
              f"{item.why}".replace("    ", "  "))
    print(f"{len(found)} left by writers, {len(deleted)} deleted")
    return 0


def _ui(cfg: Config, args: argparse.Namespace) -> int:
    import subprocess

    from pipeline.tracking.tracker import Tracker
    from pipeline.tracking.ui import ui_server

    with ui_server(Tracker.from_config(cfg.mlflow), cfg.mlflow, args.expose, args.auth) as server:
        if server.warning:
            log.warning("%s", server.warning)
        print(f"MLflow UI on {cfg.mlflow.ui_url}{' (users: --auth)' if args.auth else ''} "
              f"(Ctrl-C stops it): {' '.join(server.command)}", flush=True)
        return subprocess.call(server.command, env=server.env)


def _serve(cfg: Config, args: argparse.Namespace) -> int:
    import subprocess

    from pipeline.tracking.serving import serve_command, serve_environment
    from pipeline.tracking.tracker import Tracker

    command = serve_command(args.model_uri, args.port)
    print(f"serving {args.model_uri} on http://127.0.0.1:{args.port}/invocations (Ctrl-C stops "
          f"it): {' '.join(command)}", flush=True)
    return subprocess.call(command, env=serve_environment(Tracker.from_config(cfg.mlflow)))


def _export(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.tracking.tracker import Tracker
    from pipeline.train.export import export_model

    export = export_model(Tracker.from_config(cfg.mlflow), args.model_uri, args.output,
                          args.format)
    _report(args, export, f"{args.format} of {args.model_uri}: inputs {export.inputs}, outputs "
                          f"{export.outputs}", f"written to {export.output_uri}")
    return 0


def _infer_expectations(args: argparse.Namespace) -> int:
    from pipeline.validation import expectations
    from pipeline.validation.validate import version_statistics

    inferred = expectations.infer(version_statistics(args.data))
    expectations.write(inferred, args.infer_expectations, args.data)
    _report(args, {"data": args.data, "expectations": args.infer_expectations},
            f"expectations of {args.data} written to {args.infer_expectations}: edit the bounds, "
            "commit the file, and point validation.expectations (or --expectations) at it")
    return 0


def _validation(cfg: Config, args: argparse.Namespace):
    """The validation the arguments ask for: a version, or a batch of predictions."""
    from pipeline.validation.validate import validate_predictions, validate_versions

    if (args.data is None) == (args.predictions is None):
        raise UsageError("give either --data URI or --predictions OUTPUT --model MODEL_URI")
    if args.predictions is not None:
        from pipeline.tracking.models import training_data
        from pipeline.tracking.tracker import Tracker

        if not args.model_uri:
            raise UsageError("--predictions needs --model MODEL_URI (the model that predicted)")
        training = training_data(Tracker.from_config(cfg.mlflow), args.model_uri)
        return validate_predictions(args.predictions, args.model_uri, training, cfg.validation)
    expected = args.expectations or cfg.validation.expectations or None
    if not args.reference and not expected:
        raise UsageError("nothing to compare with: give --reference URI and/or --expectations "
                         "FILE (or set validation.expectations)")
    return validate_versions(args.data, args.reference, expected, cfg.validation)


def _validate(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.validation import report
    from pipeline.validation.validate import check

    if args.infer_expectations:
        if args.data is None:
            raise UsageError("--infer-expectations needs --data URI")
        return _infer_expectations(args)
    validation = _validation(cfg, args)
    where = args.data or args.predictions
    path = report.write_report(validation,
                               args.report or report.default_path(cfg.data_dir, where))
    _report(args, validation.to_dict() | {"report": path}, *report.table(validation),
            f"report: {path}")
    check(validation)
    return 0


def _demo(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.demo import run_demo, ui_command

    result = run_demo(cfg)
    print(f"dataset version {result.dataset_dir} (fingerprint {result.manifest.fingerprint[:12]})")
    print(f"text dataset version {result.text_dataset_dir} "
          f"({sum(s.rows for s in result.text_manifest.splits.values())} documents, "
          f"vocabulary {result.text_manifest.extra['vocab_size']})")
    print(f"MLflow run id {result.training.run_id}")
    print(f"validation accuracy {result.training.val_accuracy:.4f}")
    print(f"text MLflow run id {result.text_training.run_id}")
    print(f"text validation accuracy {result.text_training.val_accuracy:.4f}")
    for promotion in result.promotions:
        verdict = "is champion" if promotion.decision.promote else "stays challenger"
        print(f"{promotion.challenger} {verdict} ({promotion.decision.reason})")
        if promotion.decision.promote:
            print(f"  serve it: pipeline serve --model "
                  f"models:/{promotion.challenger.name}@champion")
    print("compare the runs: pipeline runs compare")
    print(f"open the MLflow UI: pipeline ui  (= {ui_command(cfg)})")
    return 0


def _submit(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.spark import check_java
    from pipeline.submit import prepare, run

    # UnknownJobError: exit 2, like a wrong command line
    submission = prepare(args.job, args.submission, driver_memory=cfg.spark.driver_memory)
    if args.submission.dry_run:
        print(submission.shell_line())
        print(f"archive {submission.archive}")
        return 0
    check_java()
    log.info("submitting %s with %s (library %s)", args.job, submission.argv[0],
             submission.archive)
    return run(submission)


HANDLERS = {"doctor": _doctor, "ingest": _ingest, "train": _train, "evaluate": _evaluate,
            "explain": _explain, "promote": _promote, "predict": _predict, "retrain": _retrain,
            "runs": _runs, "datasets": _datasets, "ui": _ui, "serve": _serve, "export": _export,
            "validate": _validate, "demo": _demo, "submit": _submit}


# --- main ------------------------------------------------------------------------------------

def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _print_json(obj: Mapping[str, Any]) -> None:
    print(json.dumps(obj, default=str), flush=True)


def _parse(argv: list[str]) -> argparse.Namespace:
    """Parsed arguments; a wrong command line exits 2 (with ``--json``, an error object too)."""
    try:
        return build_parser().parse_args(argv)
    except _UsageExit as exc:
        if "--json" in (argv[:argv.index("--")] if "--" in argv else argv):
            _print_json({"error": {"type": "UsageError", "message": exc.message,
                                   "exit_code": EXIT_USAGE}})
        raise


def _error_line(args: argparse.Namespace, exc: BaseException) -> str:
    """``pipeline COMMAND: [error: ]message``; ``error:`` only for plain failures (status 1)."""
    if isinstance(exc, KeyboardInterrupt):
        return "pipeline: interrupted"
    words = [args.command, getattr(args, "kind", None), getattr(args, "action", None)]
    command = " ".join(word for word in words if word)
    tag = "error: " if getattr(exc, "exit_code", EXIT_FAILURE) == EXIT_FAILURE else ""
    return f"pipeline {command}: {tag}{exc}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status is 0 or the ``exit_code`` of the error that ended it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(argv)
    setup_logging(verbose=args.verbose)
    as_json = getattr(args, "json", False)
    # schedulers stop jobs with SIGTERM: unwind like Ctrl-C, so runs are closed and locks freed
    signal.signal(signal.SIGTERM, _interrupt)
    error: BaseException | None = None
    try:
        with _stdout_to_stderr(as_json):
            code = HANDLERS[args.command](_load(args), args)
    except PipelineError as exc:  # ConfigError too, also when found late
        error, code = exc, exc.exit_code
    except KeyboardInterrupt as exc:
        error, code = exc, EXIT_INTERRUPTED
    except Exception as exc:  # a bug: the traceback is the report; with --json, an object too
        if as_json:
            _print_json({"error": error_json(exc, EXIT_FAILURE) | {"message": first_line(exc)}})
        raise
    if error is not None:
        print(_error_line(args, error), file=sys.stderr)
    if as_json:
        outcome = getattr(args, "outcome", None) or {}
        _print_json(outcome | ({"error": error_json(error, code)} if error else {}))
    return code
