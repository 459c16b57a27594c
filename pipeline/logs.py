"""Readable logs: our messages on stderr, third-party noise silenced.

Called once per process (the CLI, each Horovod worker) before the noisy libraries load.
"""

from __future__ import annotations

import logging
import os
import warnings

NOISY_LOGGERS = ("py4j", "petastorm", "pyarrow", "tensorflow", "absl", "mlflow", "alembic",
                 "horovod", "urllib3", "matplotlib", "h5py")


def quiet_third_party() -> None:
    """Silence TensorFlow's C++ logs, Petastorm's FutureWarnings and chatty loggers."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm(\..*)?$")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"pyarrow(\..*)?$")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=r".*is deprecated.*", module=r"mlflow(\..*)?$")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def setup_logging(verbose: bool = False) -> None:
    """Log ``pipeline.*`` messages with a timestamp; everything else at ERROR."""
    quiet_third_party()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-5s %(name)s: %(message)s",
                                           datefmt="%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("pipeline").setLevel(logging.DEBUG if verbose else logging.INFO)
