"""``pipeline submit``: run a ``jobs/`` entry point on a cluster through ``spark-submit``.

The library travels with the job as a zip for ``--py-files``, built from the imported
``pipeline`` package (deterministic: sorted entries, fixed timestamps and modes; symlinks such as
``resources/default.yaml`` stored as their real bytes; package files are read through
``importlib.resources``, so the zip works as is). The driver and the executors import it before
any installed copy. The configuration file goes with ``--files``.

Parsing and command building are pure functions; only :func:`run` starts a process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import shlex
import subprocess
import sys
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pipeline.errors import PipelineError

ARCHIVE_PREFIX = "pipeline-"  # + the first 12 hex digits of the zip's SHA-256 + ".zip"
DEFAULT_BUILD_DIR = Path("build") / "submit"
PACKAGE_DIR = Path(__file__).resolve().parent
# spark-submit's options that take no value (SparkSubmitOptionParser's switches); every other
# option takes one, as ``--opt value`` or ``--opt=value``
SPARK_SUBMIT_SWITCHES = frozenset({"--verbose", "-v", "--supervise", "--help", "-h",
                                   "--version", "--usage-error"})
_EXCLUDED_DIRS = frozenset({"__pycache__", "tests"})
_EXCLUDED_SUFFIXES = (".pyc", ".pyo")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class SubmitError(PipelineError):
    """The job cannot be submitted; the message says why."""


class UnknownJobError(SubmitError):
    """JOB is not one of the entry points in ``jobs/``."""

    exit_code = 2


class SparkSubmitMissingError(SubmitError):
    """No ``spark-submit`` in the installed pyspark."""


# ---------------------------------------------------------------------------------------------
# jobs


def jobs_dir() -> Path:
    """``jobs/`` beside the package (a checkout), else ``./jobs``."""
    beside = PACKAGE_DIR.parent / "jobs"
    return beside if beside.is_dir() else Path.cwd() / "jobs"


def available_jobs(directory: Path | None = None) -> list[str]:
    """The entry points: every ``jobs/NAME.py`` (not ``_private.py``), sorted."""
    directory = directory or jobs_dir()
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.py") if not p.name.startswith("_"))


def job_script(name: str, directory: Path | None = None) -> Path:
    directory = directory or jobs_dir()
    jobs = available_jobs(directory)
    if name not in jobs:
        listed = ", ".join(jobs) if jobs else f"none: no jobs/*.py in {directory}"
        raise UnknownJobError(f"unknown job {name!r}; available: {listed}")
    return (directory / f"{name}.py").resolve()


# ---------------------------------------------------------------------------------------------
# the archive


def archive_members(package_dir: Path = PACKAGE_DIR) -> list[tuple[str, Path]]:
    """(name in the zip, file to read) for every file of the package, sorted by name.

    Symlinks are followed, so a linked file is stored as its target's bytes; caches, compiled
    files, hidden files and ``tests`` folders are left out.
    """
    members = []
    for path in package_dir.rglob("*"):
        relative = path.relative_to(package_dir)
        if any(part in _EXCLUDED_DIRS or part.startswith(".") for part in relative.parts):
            continue
        if path.name.endswith(_EXCLUDED_SUFFIXES) or path.is_dir():
            continue
        if not path.is_file():
            raise SubmitError(f"cannot package {path}: a broken link or not a regular file")
        name = (PurePosixPath(package_dir.name) / PurePosixPath(*relative.parts)).as_posix()
        members.append((name, path))
    return sorted(members)


def archive_bytes(package_dir: Path = PACKAGE_DIR) -> bytes:
    """The package as a zip importable from ``sys.path``; the same files give the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for name, path in archive_members(package_dir):
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3  # unix, whatever builds it
            zf.writestr(info, path.read_bytes())
    return buffer.getvalue()


def build_archive(build_dir: Path, package_dir: Path = PACKAGE_DIR) -> Path:
    """Write ``build_dir/pipeline-<hash>.zip`` (atomically; kept when it exists). Named by
    content: a running job keeps importing lazily from its own zip when the code changes and
    another job is submitted."""
    build_dir.mkdir(parents=True, exist_ok=True)
    data = archive_bytes(package_dir)
    target = build_dir / f"{ARCHIVE_PREFIX}{hashlib.sha256(data).hexdigest()[:12]}.zip"
    if target.is_file() and target.read_bytes() == data:
        return target.resolve()
    staging = build_dir / f".{target.name}.{os.getpid()}.tmp"
    staging.write_bytes(data)
    os.replace(staging, target)
    return target.resolve()


# ---------------------------------------------------------------------------------------------
# arguments


@dataclass(frozen=True)
class SubmitArguments:
    """``pipeline submit JOB`` split into ours, spark-submit's and the job's."""

    master: str | None = None
    dry_run: bool = False
    config: str | None = None
    build_dir: str | None = None
    overrides: list[str] = field(default_factory=list)
    spark_options: list[str] = field(default_factory=list)
    job_args: list[str] = field(default_factory=list)


def _value(tokens: Sequence[str], i: int, option: str) -> tuple[str, int]:
    """The value of the option at ``tokens[i]`` (``--opt=v`` or ``--opt v``), next index."""
    token = tokens[i]
    if "=" in token and token.startswith("--"):
        return token.split("=", 1)[1], i + 1
    if i + 1 >= len(tokens):
        raise SubmitError(f"{option} needs a value")
    return tokens[i + 1], i + 2


def _lift_config(job_args: list[str]) -> tuple[str | None, list[str]]:
    """Take ``--config FILE`` out of the job's arguments, so that it can be shipped."""
    rest, config, i = [], None, 0
    while i < len(job_args):
        token = job_args[i]
        if token == "--config" or token.startswith("--config="):
            if config is not None:
                raise SubmitError("--config is given twice")
            config, i = _value(job_args, i, "--config")
        else:
            rest.append(token)
            i += 1
    return config, rest


def parse_arguments(tokens: Sequence[str]) -> SubmitArguments:
    """Split what follows ``pipeline submit JOB``.

    Before ``--``: ``--master URL``, ``--dry-run``, ``--config FILE``, ``--build-dir DIR`` and
    ``key=value`` configuration overrides are ours; every other option is spark-submit's and
    passes through verbatim, in order (with its value). After ``--``: the job's arguments
    (a ``--config FILE`` among them is taken out and shipped like ours).
    """
    tokens = list(tokens)
    cut = tokens.index("--") if "--" in tokens else len(tokens)
    head, job_args = tokens[:cut], tokens[cut + 1:]
    ours: dict[str, str | None] = {"--master": None, "--config": None, "--build-dir": None}
    dry_run, overrides, spark_options = False, [], []
    i = 0
    while i < len(head):
        token = head[i]
        option = token.split("=", 1)[0]
        if option in ours:
            ours[option], i = _value(head, i, option)
        elif token == "--dry-run":
            dry_run, i = True, i + 1
        elif token in SPARK_SUBMIT_SWITCHES:
            spark_options.append(token)
            i += 1
        elif token.startswith("-"):
            _, j = _value(head, i, option)
            spark_options.extend(head[i:j])
            i = j
        elif "=" in token:
            overrides.append(token)
            i += 1
        else:
            raise SubmitError(f"unexpected argument {token!r}: the job's arguments go after "
                              f"'--', e.g. pipeline submit JOB --master URL -- --data PATH")
    lifted, job_args = _lift_config(job_args)
    if lifted is not None and ours["--config"] is not None:
        raise SubmitError("--config is given both before and after '--'; give it once")
    return SubmitArguments(master=ours["--master"], dry_run=dry_run,
                           config=ours["--config"] or lifted, build_dir=ours["--build-dir"],
                           overrides=overrides, spark_options=spark_options,
                           job_args=job_args)


def _option_values(options: Sequence[str], name: str) -> list[tuple[int, int, str]]:
    """(start, end, value) of every occurrence of spark-submit option ``name``."""
    found, i = [], 0
    while i < len(options):
        token = options[i]
        if token in SPARK_SUBMIT_SWITCHES or not token.startswith("-"):
            i += 1
            continue
        value, j = _value(options, i, token.split("=", 1)[0])
        if token.split("=", 1)[0] == name:
            found.append((i, j, value))
        i = j
    return found


def _conf_values(options: Sequence[str], key: str) -> list[str]:
    return [value.split("=", 1)[1] for _, _, value in _option_values(options, "--conf")
            if value.split("=", 1)[0] == key and "=" in value]


def deploy_mode(spark_options: Sequence[str]) -> str:
    """``client`` or ``cluster``, as spark-submit will decide (the last setting wins)."""
    modes = [v for _, _, v in _option_values(spark_options, "--deploy-mode")]
    mode = modes[-1] if modes else None
    if mode is None:
        confs = _conf_values(spark_options, "spark.submit.deployMode")
        mode = confs[-1] if confs else "client"
    if mode not in ("client", "cluster"):
        raise SubmitError(f"--deploy-mode must be client or cluster, not {mode!r}")
    return mode


# ---------------------------------------------------------------------------------------------
# the command


def spark_home() -> Path:
    """The installed pyspark, which is a complete Spark distribution."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise SparkSubmitMissingError(
            "spark-submit was not found: pyspark is not installed in this environment "
            f"({sys.prefix}); run 'make venv'")
    return Path(spec.origin).parent


def spark_submit_path(home: Path | None = None) -> Path:
    home = home or spark_home()
    script = home / "bin" / "spark-submit"
    if not script.is_file():
        raise SparkSubmitMissingError(f"spark-submit was not found: no {script} in the "
                                      f"installed pyspark; reinstall it ('make venv')")
    return script


@dataclass(frozen=True)
class Submission:
    """What to run: the environment additions and the argv of spark-submit."""

    env: dict[str, str]
    argv: list[str]
    archive: Path

    def shell_line(self) -> str:
        assignments = [f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items())]
        return " ".join([*assignments, shlex.join(self.argv)])


def build_command(*, script: Path, master: str, archive: Path, spark_submit: Path,
                  python: str, log4j_config: Path, spark_options: Sequence[str] = (),
                  job_args: Sequence[str] = (), config: Path | None = None,
                  overrides: Sequence[str] = (), driver_memory: str | None = None
                  ) -> Submission:
    """The spark-submit command line for ``script`` (pure: nothing is read or run).

    Our defaults come first and the user's spark-submit options after them, verbatim and in
    their order, so that theirs win (spark-submit keeps the last value of an option). Two
    options are merged instead of replaced: ``--py-files`` (the archive stays first) and
    ``--files`` (ours ships the configuration).
    """
    mode = deploy_mode(spark_options)
    user = list(spark_options)
    user_files = [v for _, _, v in _option_values(user, "--files")]
    user_py_files = [v for _, _, v in _option_values(user, "--py-files")]
    drop = {k for option in ("--files", "--py-files")
            for s, e, _ in _option_values(user, option) for k in range(s, e)}
    user = [token for k, token in enumerate(user) if k not in drop]

    files = []
    job_config: list[str] = []
    if config is not None:
        files.append(str(config))
        # client mode: the driver runs here and reads the file where it is; cluster mode:
        # spark-submit puts it in the driver's working directory
        job_config = ["--config", config.name if mode == "cluster" else str(config)]

    argv = [str(spark_submit), "--master", master,
            "--conf", f"spark.pyspark.python={python}",
            "--conf", f"spark.pyspark.driver.python={python}",
            "--driver-java-options", f"-Dlog4j2.configurationFile={log4j_config}"]
    user_sets_memory = (_option_values(user, "--driver-memory")
                        or _conf_values(user, "spark.driver.memory"))
    if driver_memory and not user_sets_memory:
        argv += ["--driver-memory", driver_memory]
    argv += ["--py-files", ",".join([str(archive), *user_py_files])]
    if files or user_files:
        argv += ["--files", ",".join([*files, *user_files])]
    argv += [*user, str(script), *job_config, *job_args, *overrides]
    return Submission(env={"SPARK_HOME": str(spark_submit.parent.parent)}, argv=argv,
                      archive=archive)


def run(submission: Submission, environ: Mapping[str, str] | None = None) -> int:
    """Run spark-submit; its exit status (128 + N when signal N ended it)."""
    env = {**(os.environ if environ is None else environ), **submission.env}
    try:
        code = subprocess.call(submission.argv, env=env)
    except OSError as exc:
        raise SparkSubmitMissingError(f"cannot run {submission.argv[0]}: {exc.strerror}") \
            from None
    return 128 - code if code < 0 else code


def prepare(job: str, arguments: SubmitArguments, *, driver_memory: str | None = None
            ) -> Submission:
    """Check the job and spark-submit, build the archive, and make the command."""
    from pipeline.spark import log4j2_config

    if not arguments.master:
        raise SubmitError("--master URL is required, e.g. spark://host:7077, yarn, "
                          "k8s://https://host:6443 or local[*]")
    script = job_script(job)
    submit = spark_submit_path()
    config = Path(arguments.config).resolve() if arguments.config else None
    if config is not None and not config.is_file():
        raise SubmitError(f"--config {arguments.config}: no such file")
    archive = build_archive(Path(arguments.build_dir) if arguments.build_dir
                            else DEFAULT_BUILD_DIR)
    return build_command(script=script, master=arguments.master, archive=archive,
                         spark_submit=submit, python=sys.executable,
                         log4j_config=log4j2_config(), spark_options=arguments.spark_options,
                         job_args=arguments.job_args, config=config,
                         overrides=arguments.overrides, driver_memory=driver_memory)
