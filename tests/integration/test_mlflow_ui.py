"""The MLflow UI in a real browser: ``pipeline ui`` serves the store on 127.0.0.1, Debian's
headless chromium (driven by Playwright, which downloads nothing) opens the page that ``pipeline
runs compare`` prints, and a registered version's model card; screenshots are kept in
test-artifacts/."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.cluster import free_port
from tests.conftest import REPO, make_config
from tests.procs import PIPELINE, run_pipeline, wait_until_answers

ARTIFACTS = REPO / "test-artifacts"
RUNS = {"lr 0.001 (browser test)": 0.9731, "lr 0.01 (browser test)": 0.8642}


@pytest.fixture
def served(tmp_path, digits_dataset):
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from pipeline.tracking.runs import create_training_run, end_run
    from pipeline.tracking.tracker import Tracker

    url, manifest = digits_dataset
    settings = [f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlruns.db'}",
                f"mlflow.artifact_root={tmp_path / 'mlartifacts'}", f"mlflow.ui_port={free_port()}"]
    cfg = make_config(tmp_path, *settings)
    tracker = Tracker.from_config(cfg.mlflow)
    client = MlflowClient(cfg.mlflow.tracking_uri)
    for name, accuracy in RUNS.items():
        run_id = create_training_run(tracker, name, {**cfg.to_dict(), "model": "image_cnn"},
                                     manifest, url)
        client.log_batch(run_id, metrics=[Metric("val_accuracy", accuracy, 0, 0)])
        end_run(tracker, run_id, ok=True)
    with _ui(cfg, settings, tmp_path):
        yield settings, tmp_path


@contextmanager
def _ui(cfg, settings: list[str], cwd) -> Iterator[str]:
    """``pipeline ui`` with ``settings`` for the block; yields its URL."""
    server = subprocess.Popen([PIPELINE, "ui", *settings], cwd=cwd, start_new_session=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until_answers(f"{cfg.mlflow.ui_url}/health", server, "pipeline ui",
                           lambda: server.stdout.read().decode() if server.poll() is not None
                           else "(still running, not answering)")
        yield cfg.mlflow.ui_url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@contextmanager
def _chromium() -> Iterator:
    """A page of Debian's headless chromium, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: sudo apt-get install -y chromium"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser.new_page(viewport={"width": 1600, "height": 1000})
        finally:
            browser.close()


def test_compare_page_shows_both_runs_in_chromium(served):
    settings, cwd = served
    listed = subprocess.run([PIPELINE, "runs", "compare", *settings], cwd=cwd,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert listed.stdout.index("lr 0.001") < listed.stdout.index("lr 0.01 ")  # best first
    url = re.search(r"compare in the MLflow UI: (\S+)", listed.stdout).group(1)
    assert url.startswith("http://127.0.0.1:")

    with _chromium() as page:
        page.goto(url)
        for name in RUNS:
            page.get_by_text(name).first.wait_for(timeout=60_000)
        page.get_by_text("0.9731").first.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "mlflow_compare_runs.png"), full_page=True)
    assert (ARTIFACTS / "mlflow_compare_runs.png").stat().st_size > 10_000


def test_a_registered_versions_model_card_reads_in_the_ui(digits_model, tmp_path):
    """The version page links the card; the run's artifact view shows its HTML rendered."""
    from mlflow.tracking import MlflowClient

    cfg, result = digits_model
    version = result.model_version
    client = MlflowClient(cfg.mlflow.tracking_uri)
    experiment = client.get_run(result.run_id).info.experiment_id
    settings = [f"mlflow.tracking_uri={cfg.mlflow.tracking_uri}", f"mlflow.ui_port={free_port()}"]
    ui_cfg = make_config(tmp_path, *settings)
    with _ui(ui_cfg, settings, tmp_path) as url, _chromium() as page:
        page.goto(f"{url}/#/models/{version.name}/versions/{version.version}")
        page.get_by_text(f"runs:/{result.run_id}/model_card/v{version.version}.md").first \
            .wait_for(timeout=60_000)
        page.goto(f"{url}/#/experiments/{experiment}/runs/{result.run_id}/artifacts/model_card/"
                  f"v{version.version}.html")
        card = page.frame_locator("iframe")  # MLflow shows an HTML artifact in a frame
        card.get_by_text(f"Model card: {version.name} v{version.version}").wait_for(
            timeout=60_000)
        for section in ("Intended use", "Training data", "Where it came from", "Evaluation"):
            card.get_by_role("heading", name=section, exact=True).wait_for(timeout=10_000)
        page.screenshot(path=str(ARTIFACTS / "mlflow_model_card.png"), full_page=True)
    assert (ARTIFACTS / "mlflow_model_card.png").stat().st_size > 10_000


def test_a_network_facing_ui_needs_expose_and_auth_needs_the_admins_credentials(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    store = f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlruns.db'}"
    exposed = run_pipeline(["ui", store, "mlflow.ui_host=0.0.0.0"], cwd=tmp_path, env=env,
                           timeout=120)
    assert exposed.returncode == 2, exposed.stderr[-2000:]
    assert "mlflow.ui_host=0.0.0.0" in exposed.stderr and "--expose" in exposed.stderr
    nobody = run_pipeline(["ui", store, "--auth"], cwd=tmp_path, env=env, timeout=120)
    assert nobody.returncode == 2, nobody.stderr[-2000:]
    assert "MLFLOW_TRACKING_USERNAME" in nobody.stderr and "Traceback" not in nobody.stderr
    assert not (tmp_path / "mlruns.db").exists()  # refused before any server started


def _create_experiment(url: str, name: str, user: str | None = None) -> int:
    """The HTTP status of a write (creating an experiment), with basic auth when ``user``."""
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/experiments/create",
                                     data=json.dumps({"name": name}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    if user:
        token = base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as refused:
        return refused.code


PASSWORD = "a-long-admin-password-7"


def test_ui_with_auth_refuses_an_unauthenticated_write(tmp_path):
    port = free_port()
    settings = [f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlruns.db'}",
                f"mlflow.auth_database_uri=sqlite:///{tmp_path / 'users.db'}",
                "mlflow.ui_host=0.0.0.0", f"mlflow.ui_port={port}"]
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": PASSWORD,
           "TMPDIR": str(tmp_path / "tmp")}
    server = subprocess.Popen([PIPELINE, "ui", *settings, "--expose", "--auth"], cwd=tmp_path,
                              env=env, start_new_session=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(f"{url}/health", server, "pipeline ui --auth",
                           lambda: server.stdout.read().decode() if server.poll() is not None
                           else "(still running, not answering)", timeout_s=300)
        assert _create_experiment(url, "anonymous") == 401
        assert _create_experiment(url, "by the admin", user="alice") == 200
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        output = server.communicate(timeout=60)[0].decode()
    assert "reachable from the network" in output  # --expose warns
    users = (tmp_path / "users.db").read_bytes()
    assert b"alice" in users and PASSWORD.encode() not in users  # a hash, not the password
    assert not list((tmp_path / "tmp").glob("pipeline-ui-*"))  # its config file is removed
