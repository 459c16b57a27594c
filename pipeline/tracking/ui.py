"""``pipeline ui``: MLflow's server on the configured store. It binds to loopback unless
exposed on purpose (``--expose``), and sits behind MLflow's basic-auth app (``--auth``) when
other people share it: then every request needs a user, and only the admin may write."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import MlflowConfig
from pipeline.errors import UsageError
from pipeline.tracking.tracker import Tracker

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
# the first --auth start creates the admin with the credentials MLflow clients send; later
# starts keep the users database (MLflow never resets an existing user's password)
ADMIN_USER, ADMIN_PASSWORD = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"
MIN_PASSWORD = 12  # MLflow refuses a shorter password for the admin it creates


@dataclass(frozen=True)
class UiServer:
    """The ``mlflow server`` command and the environment it runs with."""

    command: list[str]
    env: dict[str, str]
    warning: str | None  # what an exposed UI risks, for the person starting it


def check_exposure(cfg: MlflowConfig, expose: bool, auth: bool) -> str | None:
    """Refuse a network-facing ``mlflow.ui_host`` without ``--expose``; the warning to print
    when it is exposed, or None on loopback."""
    if cfg.ui_host in LOOPBACK:
        return None
    if not expose:
        raise UsageError(f"mlflow.ui_host={cfg.ui_host} would serve the UI to the network; "
                         "pass --expose to mean it (and --auth when others can reach it)")
    if auth:
        return (f"the MLflow UI on {cfg.ui_url} is reachable from the network; every request "
                "needs a user (--auth), but traffic is plain HTTP: put TLS in front of it")
    return (f"the MLflow UI on {cfg.ui_url} is reachable from the network WITHOUT "
            "authentication: anyone who reaches it can read, change and delete runs and "
            "models; add --auth")


def admin_credentials() -> tuple[str, str]:
    """(user, password) of the admin from the environment; a clear error naming the
    variables when they are missing or the password is too short."""
    user, password = os.environ.get(ADMIN_USER, ""), os.environ.get(ADMIN_PASSWORD, "")
    if not user or not password:
        raise UsageError(f"--auth takes the admin's credentials from {ADMIN_USER} and "
                         f"{ADMIN_PASSWORD} (the variables MLflow clients send); set both")
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"{ADMIN_PASSWORD} must have at least {MIN_PASSWORD} characters "
                         "(MLflow's rule for the admin user)")
    return user, password


def mlflow_executable() -> str:
    """The ``mlflow`` command of this environment (beside its Python), else on ``PATH``."""
    mlflow = Path(sys.executable).with_name("mlflow")
    return str(mlflow) if mlflow.exists() else (shutil.which("mlflow") or "mlflow")


def ui_command(tracker: Tracker, host: str, port: int) -> list[str]:
    """``mlflow server`` on the tracker's store, bound to ``host`` (127.0.0.1 by default)."""
    return [mlflow_executable(), "server", "--backend-store-uri", tracker.uri,
            "--host", host, "--port", str(port)]


@contextmanager
def ui_server(tracker: Tracker, cfg: MlflowConfig, expose: bool, auth: bool
              ) -> Iterator[UiServer]:
    """The UI server to run; with ``auth``, MLflow's basic-auth app with a users database at
    ``mlflow.auth_database_uri``, configured by a file that holds no secret and is removed
    when the block ends (the admin's password reaches MLflow through its environment)."""
    warning = check_exposure(cfg, expose, auth)
    command = ui_command(tracker, cfg.ui_host, cfg.ui_port)
    if not auth:
        yield UiServer(command, dict(os.environ), warning)
        return
    user, password = admin_credentials()
    with tempfile.TemporaryDirectory(prefix="pipeline-ui-") as folder:
        ini = Path(folder) / "basic_auth.ini"
        ini.write_text("[mlflow]\ndefault_permission = READ\n"
                       f"database_uri = {cfg.auth_database_uri}\n"
                       "authorization_function = "
                       "mlflow.server.auth:authenticate_request_basic_auth\n")
        env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(ini),
               "MLFLOW_AUTH_ADMIN_USERNAME": user, "MLFLOW_AUTH_ADMIN_PASSWORD": password,
               "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32)}
        yield UiServer([*command, "--app-name", "basic-auth"], env, warning)
