"""``pipeline submit``: argument splitting, the spark-submit command, the library archive."""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import zipfile
from pathlib import Path

import pytest

from pipeline import submit
from pipeline.cli import build_parser, main
from pipeline.submit import (
    SubmitError,
    UnknownJobError,
    archive_bytes,
    build_archive,
    build_command,
    job_script,
    parse_arguments,
)

REPO = Path(__file__).resolve().parents[2]
SPARK_SUBMIT = Path("/opt/spark/bin/spark-submit")
PY = "/venv/bin/python"
LOG4J = Path("/repo/pipeline/resources/log4j2.properties")
ARCHIVE = Path("/repo/build/submit/pipeline.zip")
SCRIPT = Path("/repo/jobs/train.py")


def _command(**kwargs) -> list[str]:
    defaults = dict(script=SCRIPT, master="spark://m:7077", archive=ARCHIVE,
                    spark_submit=SPARK_SUBMIT, python=PY, log4j_config=LOG4J)
    return build_command(**{**defaults, **kwargs}).argv


def _after(argv: list[str], option: str) -> list[str]:
    """Every value given to ``option``."""
    return [argv[i + 1] for i, token in enumerate(argv[:-1]) if token == option]


# --- arguments -------------------------------------------------------------------------------

def test_arguments_split_into_ours_spark_submits_and_the_jobs():
    parsed = parse_arguments([
        "--master", "yarn", "--conf", "spark.a=1", "--executor-memory", "2g", "--verbose",
        "--deploy-mode=cluster", "--config", "conf/yarn.yaml", "train.epochs=2", "--dry-run",
        "--", "--data", "hdfs:///d", "train.batch_size=8"])
    assert parsed.master == "yarn"
    assert parsed.dry_run
    assert parsed.config == "conf/yarn.yaml"
    assert parsed.overrides == ["train.epochs=2"]
    assert parsed.spark_options == ["--conf", "spark.a=1", "--executor-memory", "2g",
                                    "--verbose", "--deploy-mode=cluster"]
    assert parsed.job_args == ["--data", "hdfs:///d", "train.batch_size=8"]


def test_a_config_among_the_job_arguments_is_shipped_like_ours():
    parsed = parse_arguments(["--master", "x", "--", "--config", "c.yaml", "--data", "d"])
    assert parsed.config == "c.yaml"
    assert parsed.job_args == ["--data", "d"]
    with pytest.raises(SubmitError, match="once"):
        parse_arguments(["--master", "x", "--config", "a.yaml", "--", "--config=b.yaml"])


def test_a_stray_word_before_the_separator_is_an_error_saying_where_it_goes():
    with pytest.raises(SubmitError, match="after '--'"):
        parse_arguments(["--master", "x", "data"])
    with pytest.raises(SubmitError, match="needs a value"):
        parse_arguments(["--master", "x", "--executor-memory"])


def test_the_cli_parses_spark_options_and_job_arguments_apart():
    args = build_parser().parse_args([
        "submit", "predict", "--master", "spark://m:7077", "--conf", "spark.x=y",
        "--num-executors", "3", "spark.driver_memory=1g", "--",
        "--model", "runs:/abc/model", "--input", "in", "--output", "out", "spark.conf.k=v"])
    assert args.command == "submit" and args.job == "predict"
    assert args.submission.spark_options == ["--conf", "spark.x=y", "--num-executors", "3"]
    assert args.submission.job_args == ["--model", "runs:/abc/model", "--input", "in",
                                        "--output", "out", "spark.conf.k=v"]
    # the overrides before '--' are loaded and validated here, like every command's
    assert args.overrides == ["spark.driver_memory=1g"]
    assert args.config is None


def test_cli_usage_errors_exit_2(capsys):
    for argv in (["submit", "train"], ["submit", "train", "--master", "x", "oops"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--master URL is required" in err and "'oops'" in err


# --- jobs ------------------------------------------------------------------------------------

def test_jobs_are_discovered_from_the_folder(tmp_path):
    for name in ("train", "retrain", "_helper"):
        (tmp_path / f"{name}.py").write_text("")
    assert submit.available_jobs(tmp_path) == ["retrain", "train"]
    assert job_script("retrain", tmp_path) == (tmp_path / "retrain.py").resolve()
    assert {"ingest_images", "ingest_text", "train", "predict"} <= set(submit.available_jobs())


def test_an_unknown_job_lists_the_available_ones(tmp_path, capsys):
    (tmp_path / "train.py").write_text("")
    with pytest.raises(UnknownJobError, match=r"unknown job 'trian'; available: train"):
        job_script("trian", tmp_path)
    assert main(["submit", "trian", "--master", "local[1]", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "unknown job 'trian'" in err and "ingest_images" in err and "predict" in err


# --- the command -----------------------------------------------------------------------------

def test_client_mode_command():
    config = Path("/home/me/conf/standalone.yaml")
    argv = _command(job_args=["--data", "/d"], config=config, overrides=["train.epochs=2"],
                    driver_memory="1g")
    assert argv[:3] == [str(SPARK_SUBMIT), "--master", "spark://m:7077"]
    assert f"spark.pyspark.python={PY}" in _after(argv, "--conf")
    assert f"spark.pyspark.driver.python={PY}" in _after(argv, "--conf")
    assert _after(argv, "--driver-java-options") == [f"-Dlog4j2.configurationFile={LOG4J}"]
    assert _after(argv, "--driver-memory") == ["1g"]
    assert _after(argv, "--py-files") == [str(ARCHIVE)]
    assert _after(argv, "--files") == [str(config)]
    # the driver runs here and reads the configuration where it is
    assert argv[argv.index(str(SCRIPT)):] == [str(SCRIPT), "--config", str(config),
                                              "--data", "/d", "train.epochs=2"]


def test_cluster_mode_points_the_job_at_the_shipped_file_name():
    config = Path("/home/me/conf/yarn.yaml")
    for mode in (["--deploy-mode", "cluster"], ["--conf", "spark.submit.deployMode=cluster"]):
        argv = _command(master="yarn", spark_options=mode, config=config,
                        job_args=["--data", "hdfs:///d"])
        assert _after(argv, "--files") == [str(config)]
        assert argv[argv.index(str(SCRIPT)):] == [str(SCRIPT), "--config", "yarn.yaml",
                                                  "--data", "hdfs:///d"]
    with pytest.raises(SubmitError, match="client or cluster"):
        _command(spark_options=["--deploy-mode", "nowhere"])


def test_extra_options_pass_through_verbatim_after_ours_in_their_order():
    extra = ["--conf", "spark.pyspark.python=./environment/bin/python", "--executor-memory",
             "6g", "--archives", "venv.tar.gz#environment", "--deploy-mode", "client",
             "--conf=spark.executor.cores=2", "--supervise", "--driver-memory", "3g"]
    argv = _command(spark_options=extra, driver_memory="4g", job_args=["--data", "/d"])
    script_at = argv.index(str(SCRIPT))
    assert argv[script_at - len(extra):script_at] == extra
    # theirs come last, so spark-submit keeps them; ours give way on the driver memory
    assert _after(argv, "--driver-memory") == ["3g"]
    assert argv.index(f"spark.pyspark.python={PY}") < argv.index(
        "spark.pyspark.python=./environment/bin/python")
    assert _after(_command(spark_options=["--conf", "spark.driver.memory=5g"],
                           driver_memory="4g"), "--driver-memory") == []


def test_user_files_and_py_files_are_merged_not_lost():
    argv = _command(spark_options=["--files", "a.txt,b.txt", "--py-files", "extra.zip",
                                   "--conf", "k=v"], config=Path("/c/site.yaml"))
    assert _after(argv, "--files") == ["/c/site.yaml,a.txt,b.txt"]
    assert _after(argv, "--py-files") == [f"{ARCHIVE},extra.zip"]  # ours first
    assert "k=v" in _after(argv, "--conf")
    assert "--files" not in _command()  # nothing to ship besides the library


def test_dry_run_prints_one_copy_pasteable_line_and_runs_nothing(tmp_path, capsys,
                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(submit.subprocess, "call", lambda *a, **k: pytest.fail("ran"))
    config = tmp_path / "my conf.yaml"
    config.write_text("train:\n  epochs: 2\n")
    assert main(["submit", "train", "--master", "spark://m:7077", "--config", str(config),
                 "--conf", "spark.x=a b", "--dry-run", "--", "--data", "/d"]) == 0
    line, archive_line = capsys.readouterr().out.strip().splitlines()
    words = shlex.split(line)
    assert words[0].startswith("SPARK_HOME=")
    assert Path(words[1]).name == "spark-submit" and Path(words[1]).is_file()
    assert "spark.x=a b" in words and str(config) in words
    assert words[-4:] == ["--config", str(config), "--data", "/d"]
    (archive,) = (tmp_path / "build" / "submit").glob("pipeline-*.zip")
    assert archive_line == f"archive {archive}" and archive.is_file()


def test_exit_status_of_spark_submit_is_returned(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    calls = []
    monkeypatch.setattr(submit.subprocess, "call",
                        lambda argv, env: calls.append((argv, env)) or 7)
    assert main(["submit", "ingest_images", "--master", "local[1]", "--", "--input", "x",
                 "--output", "y"]) == 7
    (argv, env), = calls
    assert env["SPARK_HOME"] == str(Path(argv[0]).parent.parent)
    assert argv[-5:] == [str(REPO / "jobs" / "ingest_images.py"), "--input", "x",
                         "--output", "y"]


def test_a_missing_spark_submit_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(submit, "spark_home", lambda: tmp_path)
    with pytest.raises(submit.SparkSubmitMissingError, match="spark-submit was not found"):
        submit.prepare("train", parse_arguments(["--master", "local[1]"]))


# --- the archive -----------------------------------------------------------------------------

def _names(data: bytes) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(data)).namelist()


def test_archive_holds_the_package_with_real_bytes_and_no_caches():
    data = archive_bytes()
    names = _names(data)
    assert "pipeline/__init__.py" in names and "pipeline/cli.py" in names
    assert "pipeline/resources/log4j2.properties" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")
                or "/tests/" in n or n.startswith("tests/")]
    link = REPO / "pipeline" / "resources" / "default.yaml"
    assert link.is_symlink()  # the reason this test exists
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo("pipeline/resources/default.yaml")
        assert zf.read(info) == (REPO / "conf" / "default.yaml").read_bytes()
        assert info.external_attr >> 16 == 0o644  # a file, not a stored symlink


def test_archive_leaves_out_caches_and_follows_links(tmp_path):
    package = tmp_path / "pipeline"
    (package / "__pycache__").mkdir(parents=True)
    (package / "tests").mkdir()
    (package / "__init__.py").write_text("")
    (package / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (package / "tests" / "test_x.py").write_text("")
    (package / "stale.pyc").write_bytes(b"\0")
    (tmp_path / "real.yaml").write_text("a: 1\n")
    (package / "linked.yaml").symlink_to(tmp_path / "real.yaml")
    data = archive_bytes(package)
    assert _names(data) == ["pipeline/__init__.py", "pipeline/linked.yaml"]
    assert zipfile.ZipFile(io.BytesIO(data)).read("pipeline/linked.yaml") == b"a: 1\n"
    (package / "broken.yaml").symlink_to(tmp_path / "gone.yaml")
    with pytest.raises(SubmitError, match="broken link"):
        archive_bytes(package)


def test_archive_is_reproducible(tmp_path):
    first = build_archive(tmp_path / "one").read_bytes()
    copy = tmp_path / "copy" / "pipeline"
    shutil.copytree(submit.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for path in copy.rglob("*"):
        os.utime(path, (1_900_000_000, 1_900_000_000))  # other times change nothing
    assert build_archive(tmp_path / "two", copy).read_bytes() == first
    assert build_archive(tmp_path / "one").read_bytes() == first
    names = [p.name for p in (tmp_path / "one").iterdir()]
    assert len(names) == 1 and re.fullmatch(r"pipeline-[0-9a-f]{12}\.zip", names[0])  # no staging


def test_changed_code_gets_a_new_archive_and_the_old_one_stays(tmp_path):
    copy = tmp_path / "copy" / "pipeline"
    shutil.copytree(submit.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = build_archive(tmp_path / "build", copy)
    (copy / "errors.py").write_text((copy / "errors.py").read_text() + "\n# changed\n")
    after = build_archive(tmp_path / "build", copy)
    assert after != before and before.is_file()  # a running job still reads its own zip
