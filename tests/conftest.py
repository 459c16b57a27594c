"""Shared fixtures: real Spark, the real bundled digits written as files, a real MLflow store,
and models trained once for the tests that only read them."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Config, load_config
from pipeline.logs import setup_logging

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
# the folder a test lives in is its kind: `pytest -m unit`, `-m "not e2e"`, ...
FOLDER_MARKERS = {"unit": pytest.mark.unit, "integration": pytest.mark.integration,
                  "e2e": pytest.mark.e2e, "deploy": pytest.mark.deploy}
# the inner-loop tier (``make test-fast``, marked ``fast``): unit and deploy, and the data path's
# integration files (ingest, object storage, the training input); no model is trained
FAST_FILES = ("test_image_ingest.py", "test_text_ingest.py", "test_object_store.py",
              "test_s3_faults.py", "test_s3_credentials.py", "test_training_input.py")
setup_logging()


# the order files start in: the longest kinds first, so that under pytest-xdist the short unit
# tests fill the end of the run instead of one long file running alone
FOLDER_ORDER = ("e2e", "integration", "deploy", "unit")
# ... except Airflow's, which waits for its environment, built in the background meanwhile
STARTS_LATE = ("test_airflow_dag.py",)
# session fixtures that take a minute or more -> the group of the files using them, which
# pytest-xdist runs in one process (pytest_xdist_make_scheduler), so each is built once
SHARED_FIXTURES = {"demo": "demo", "digits_model": "models", "reviews_model": "models"}
GROUPED_FILES = {
    "demo": ("test_demo.py", "test_notebooks.py"),
    "models": ("test_launchers.py", "test_mlflow_ui.py", "test_predict.py",
               "test_robustness_and_explanations.py", "test_serving.py", "test_training.py",
               "test_training_options.py"),
}


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with the kind its folder stands for (tests/unit -> ``unit``, ...) and
    the inner-loop tier with ``fast``, start
    the files with slow tests first (a file's tests keep their order), check GROUPED_FILES."""
    slow_files = set()
    for item in items:
        try:
            folder = item.path.relative_to(TESTS).parts[0]
        except ValueError:  # a test outside tests/ (e.g. pytester's): no kind
            continue
        if folder in FOLDER_MARKERS:
            item.add_marker(FOLDER_MARKERS[folder])
        if folder in ("unit", "deploy") or item.path.name in FAST_FILES:
            item.add_marker(pytest.mark.fast)
        if item.get_closest_marker("slow") is not None:
            slow_files.add(item.path)
    items.sort(key=lambda item: (item.path not in slow_files, item.path.name in STARTS_LATE,
                                 _folder_rank(item.path)))
    _check_groups(items)


def _check_groups(items: list[pytest.Item]) -> None:
    """Every file using a fixture of SHARED_FIXTURES is in that fixture's group."""
    for item in items:
        for fixture, group in SHARED_FIXTURES.items():
            if fixture in item.fixturenames and xdist_group(item.nodeid) != group:
                raise pytest.UsageError(
                    f"{item.path.name} uses the session fixture {fixture!r}: add it to "
                    f"GROUPED_FILES[{group!r}] in tests/conftest.py (so it is built once)")


def xdist_group(nodeid: str) -> str:
    """The scheduling unit of a test: its file's group in GROUPED_FILES, else its file."""
    file = nodeid.split("::", 1)[0]
    name = Path(file).name
    return next((group for group, files in GROUPED_FILES.items() if name in files), file)


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: absent under -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Under ``--dist loadfile``: whole files, and the files of one GROUPED_FILES group
    together (pytest-xdist's own ``loadgroup`` cannot mark tests under pytest 9.2: it rewrites
    ``item._nodeid``, which pytest 9.2 no longer reads)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid)

    return GroupScheduling(config, log)


def _folder_rank(path: Path) -> int:
    """Where a test file's folder comes in FOLDER_ORDER (outside tests/: last)."""
    try:
        return FOLDER_ORDER.index(path.relative_to(TESTS).parts[0])
    except ValueError:
        return len(FOLDER_ORDER)


AIRFLOW_SETUP = REPO / "deploy" / "airflow" / "setup_airflow.sh"
AIRFLOW_BUILD = pytest.StashKey[subprocess.Popen]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """When Airflow's tests are among those to run, start building its virtual environment
    now, in the background: on a fresh clone pip's downloads then overlap the tests before
    them (``airflow_setup`` waits for it). Under pytest-xdist every process collects every
    test: only the first starts the build (the script takes turns with a lock)."""
    first_process = os.environ.get("PYTEST_XDIST_WORKER", "gw0") == "gw0"
    if first_process and any(item.path.name == "test_airflow_dag.py" for item in session.items):
        session.config.stash[AIRFLOW_BUILD] = subprocess.Popen(
            [str(AIRFLOW_SETUP)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A background build still running (the session ended before Airflow's tests) is
    stopped; the script's stamp is written last, so the next call builds again. Under
    pytest-xdist it is waited for instead: another process may be running Airflow's tests."""
    building = session.config.stash.get(AIRFLOW_BUILD, None)
    if building is not None and building.poll() is None:
        if os.environ.get("PYTEST_XDIST_WORKER"):
            building.communicate(timeout=900)
            return
        building.terminate()
        building.wait(timeout=60)


def airflow_setup(config: pytest.Config) -> subprocess.CompletedProcess:
    """deploy/airflow/setup_airflow.sh, finished: the background build's outcome, or a run
    now (instant when the environment is built)."""
    building = config.stash.get(AIRFLOW_BUILD, None)
    if building is not None:
        output, _ = building.communicate(timeout=900)
        if building.returncode != 0:
            return subprocess.CompletedProcess(building.args, building.returncode, output, "")
    return subprocess.run([str(AIRFLOW_SETUP)], capture_output=True, text=True, timeout=900)


@functools.cache
def _migrated_store() -> Path:
    """An empty MLflow SQLite store with every schema migration applied, made once per test
    process by MLflow itself: a new store spends seconds migrating, a copy of this none. Its
    Default experiment keeps this folder as artifact location: tests log to ``pipeline``."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = Path(tempfile.mkdtemp(prefix="pipeline-tests-store-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    SqlAlchemyStore(f"sqlite:///{folder / 'mlruns.db'}", str(folder / "mlartifacts"))
    return folder / "mlruns.db"


def fresh_store(folder: Path) -> str:
    """The tracking URI of ``folder``/mlruns.db: a new empty store unless one is there."""
    database = folder / "mlruns.db"
    if not database.exists():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_migrated_store(), database)
    return f"sqlite:///{database}"


def make_config(tmp: Path, *overrides: str) -> Config:
    """The embedded defaults, with every path under ``tmp`` and Spark on 2 local cores, and
    without robustness and explanations in evaluations (seconds each;
    test_robustness_and_explanations.py and the demo make them)."""
    return load_config(overrides=[
        f"data_dir={tmp / 'data'}",
        f"mlflow.tracking_uri={fresh_store(tmp)}",
        f"mlflow.artifact_root={tmp / 'mlartifacts'}",
        f"train.checkpoint_dir={tmp / 'checkpoints'}",
        "spark.master=local[2]",
        "evaluation.robustness=false", "evaluation.explain_per_class=0",
        *overrides,
    ])


def stored_rows(url: str, field: str) -> dict[str, np.ndarray]:
    """source -> the stored feature of every row of every split of a dataset version."""
    from pipeline.datasets.reader import read_batches

    rows = {}
    for split in ("train", "val", "test"):
        for batch in read_batches(url, split, (field, "source"), 512):
            rows.update(zip(batch["source"], batch[field], strict=True))
    return rows


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("session")


@pytest.fixture(scope="session")
def config(session_dir) -> Config:
    return make_config(session_dir)


@pytest.fixture(scope="session")
def s3(session_dir):
    """A real S3 API server on 127.0.0.1, set in this process's AWS environment (before Spark
    starts, so that its Python workers inherit it); ``s3.bucket(name)`` makes a bucket."""
    from tests.s3 import start_s3_server, use_server

    server_process = start_s3_server(session_dir / "moto.log")
    server = next(server_process)
    saved = use_server(server)
    yield server
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server_process.close()


@pytest.fixture(scope="session")
def spark(config, s3):
    from pipeline.spark import get_spark

    session = get_spark(config.spark, app_name="pipeline-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def digits_raw(session_dir) -> Path:
    """The 5,000 real MNIST digits as PNG files in one folder per class."""
    from pipeline.samples.digits import write_digits

    raw = session_dir / "raw" / "digits"
    assert write_digits(raw) == 5000
    return raw


@pytest.fixture(scope="session")
def digits_dataset(spark, config, digits_raw, session_dir):
    """(dataset url, manifest) of the digits ingested once for the whole session."""
    from pipeline.ingest.image_job import ingest_images
    from pipeline.storage import to_uri

    output = session_dir / "datasets" / "digits"
    manifest = ingest_images(spark, config, str(digits_raw), str(output))
    return to_uri(output), manifest


@pytest.fixture(scope="session")
def reviews_raw(session_dir) -> Path:
    """The 13,905 real Rotten Tomatoes snippets as .txt files in one folder per label."""
    from pipeline.samples.reviews import write_reviews

    raw = session_dir / "raw" / "reviews"
    assert write_reviews(raw) == 13905
    return raw


@pytest.fixture(scope="session")
def reviews_dataset(spark, config, reviews_raw, session_dir):
    """(dataset url, manifest) of the reviews ingested once for the whole session."""
    from pipeline.ingest.text_job import ingest_text
    from pipeline.storage import to_uri

    output = session_dir / "datasets" / "reviews"
    manifest = ingest_text(spark, config, str(reviews_raw), str(output))
    return to_uri(output), manifest


# one epoch, one reader thread per rank: row groups arrive in a fixed order, so a training
# with these settings through another launcher must agree with digits_model's (test_launchers)
DIGITS_MODEL_SETTINGS = ("train.epochs=1", "launch.reader_workers=1")


@pytest.fixture(scope="session")
def digits_model(digits_dataset, tmp_path_factory):
    """(config, result) of a local training on the digits (DIGITS_MODEL_SETTINGS), registered
    as the challenger in a store of its own. Built once: the launcher, serving and prediction
    tests only read it (compare, load, serve, predict, export), and a training with its model
    logging costs about a minute."""
    from pipeline.train.job import train

    cfg = make_config(tmp_path_factory.mktemp("digits_model"), *DIGITS_MODEL_SETTINGS)
    return cfg, train(cfg, digits_dataset[0], register=True)


# two epochs at a rate that overfits after the first (val_loss about 0.52, then 0.65): the
# kept epoch is tested
REVIEWS_MODEL_SETTINGS = ("train.epochs=2", "train.learning_rate=0.005")


@pytest.fixture(scope="session")
def reviews_model(reviews_dataset, tmp_path_factory):
    """As ``digits_model``, on the reviews (text_cnn, REVIEWS_MODEL_SETTINGS)."""
    from pipeline.train.job import train

    cfg = make_config(tmp_path_factory.mktemp("reviews_model"), *REVIEWS_MODEL_SETTINGS)
    return cfg, train(cfg, reviews_dataset[0], register=True)
