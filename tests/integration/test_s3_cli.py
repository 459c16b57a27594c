"""Issue 13's "done when", as a user would try it: the ``pipeline`` commands on ``s3://``
locations with only the standard AWS environment set (``AWS_ENDPOINT_URL`` at a real S3 API on
127.0.0.1, moto_server); an MLflow server whose artifacts go to ``s3://`` (``mlflow server
--artifacts-destination``); two ingests writing new versions into one prefix at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster import free_port
from tests.procs import Background, run_pipeline, wait_until_answers

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

PER_LABEL = 40  # 400 real digits: 2 workers, one epoch, quick


def _user_env(s3) -> dict[str, str]:
    """This environment without any AWS or MLflow setting, then the S3 server's alone."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))}
    return {**clean, **s3.env}


@pytest.fixture(scope="module")
def mlflow_server(s3, tmp_path_factory):
    """``mlflow server`` with a SQLite store and its artifacts proxied to ``s3://cli/mlflow``."""
    s3.bucket("cli")
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    command = [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
               "--artifacts-destination", "s3://cli/mlflow"]
    with (root / "server.log").open("wb") as log:
        server = subprocess.Popen(command, cwd=root, env=_user_env(s3), stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_until_answers(f"{url}/health", server, "mlflow server",
                       (root / "server.log").read_text)
    yield url
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


def _upload(s3, raw: Path, prefix: str, per_label: int) -> int:
    client, count = s3.client(), 0
    for folder in sorted(p for p in raw.iterdir() if p.is_dir()):
        for image in sorted(folder.iterdir())[:per_label]:
            client.put_object(Bucket="cli", Key=f"{prefix}/{folder.name}/{image.name}",
                              Body=image.read_bytes())
            count += 1
    return count


def _json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_ingest_train_predict_on_s3_with_the_aws_environment_alone(s3, mlflow_server,
                                                                    digits_raw, tmp_path):
    uploaded = _upload(s3, digits_raw, "raw", PER_LABEL)
    _upload(s3, digits_raw, "new", 2)
    env = _user_env(s3)
    settings = [f"mlflow.tracking_uri={mlflow_server}", "train.epochs=1",
                "train.checkpoint_dir=s3://cli/checkpoints"]

    # two ingests at once into one prefix: two complete versions, nothing half-written
    ingest = ["ingest", "images", "--input", "s3://cli/raw", "--output", "s3://cli/ds",
              "--mode", "new-version", "--json", *settings]
    writers = [Background(ingest, tmp_path, env=env) for _ in range(2)]
    outcomes = []
    for writer in writers:
        code, out, log = writer.finish()
        assert code == 0, log[-3000:]
        outcomes.append(json.loads(out))
    assert sorted(o["version_uri"] for o in outcomes) == ["s3://cli/ds/v0001",
                                                          "s3://cli/ds/v0002"]
    assert {o["fingerprint"] for o in outcomes} == {outcomes[0]["fingerprint"]}
    assert all(o["discovered"] == uploaded for o in outcomes)

    trained = _json(run_pipeline(["train", "--data", "s3://cli/ds", "--json", *settings],
                                 tmp_path, env=env))
    name = trained["model_version"]["name"]
    assert trained["dataset_url"] == "s3://cli/ds/v0002"  # the newest committed version

    scratch = tmp_path / "tmp"  # the model copies and downloads go here, and go away
    scratch.mkdir()
    predicted = _json(run_pipeline(
        ["predict", "--model", f"models:/{name}@challenger", "--input", "s3://cli/new",
         "--output", "s3://cli/pred", "--json", *settings], tmp_path,
        env={**env, "TMPDIR": str(scratch)}))
    assert predicted["inputs"] == predicted["predicted"] == 20
    # ours and MLflow's are folders; TensorFlow's autograph leaves its own generated sources
    left = [p.name for p in scratch.iterdir()
            if not p.name.startswith("__autograph_generated_file")]
    assert not left, f"temporary files left behind: {left}"

    keys = s3.keys("cli")
    for version in ("v0001", "v0002"):
        assert f"ds/{version}/manifest.json" in keys
    assert "pred/_SUCCESS" in keys and any(k.startswith("pred/part-") for k in keys)
    run_id = trained["run_id"]
    assert any(k.startswith(f"checkpoints/{run_id}/") for k in keys), "checkpoints on S3"
    # the server wrote the model's files to its artifacts destination
    assert any(k.startswith("mlflow/") and k.endswith("MLmodel") for k in keys)
    assert not any(".staging" in k or ".claim" in k.rsplit("/", 1)[-1] for k in keys
                   if k.startswith("ds/")), "no staged or claimed leftovers"
