"""Readable logs: our messages on stderr, third-party noise silenced, progress a person can follow.

``setup_logging`` is called once per process (the CLI, each Horovod worker) before the noisy
libraries load. ``Progress`` follows a long step: on a terminal one status line rewritten in
place, elsewhere (a pipe, a file, a Horovod worker whose output is forwarded line by line with
a ``[rank]<stderr>:`` prefix) a plain log line now and then.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import TextIO

from pipeline.redaction import redact

NOISY_LOGGERS = ("py4j", "petastorm", "pyarrow", "tensorflow", "absl", "mlflow", "alembic",
                 "horovod", "urllib3", "matplotlib", "h5py")

CLEAR_LINE = "\r\x1b[K"  # back to the start of the line, erase to its end

_status_lock = threading.RLock()  # one writer at a time on a terminal's status line
_status: Progress | None = None  # the status line on the terminal now, if any


def quiet_third_party() -> None:
    """Silence TensorFlow's C++ logs, Petastorm's FutureWarnings and chatty loggers."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # tqdm on stderr
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm(\..*)?$")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"pyarrow(\..*)?$")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=r".*is deprecated.*", module=r"mlflow(\..*)?$")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


class _StatusAwareHandler(logging.StreamHandler):
    """Takes the terminal's status line off before a log line and draws it again after."""

    def emit(self, record: logging.LogRecord) -> None:
        with _status_lock:
            shown = _status if _status is not None and _status.stream is self.stream else None
            if shown is not None:
                shown.erase()
            super().emit(record)
            if shown is not None:
                shown.draw()


class _RedactingFormatter(logging.Formatter):
    """Every line as it may be kept: a URI's password or signed token never reaches a log
    (logs are shipped and kept like any record; ``pipeline.redaction``'s rule)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(verbose: bool = False) -> None:
    """Log ``pipeline.*`` messages with a timestamp, secrets in URIs redacted; everything else
    at ERROR."""
    quiet_third_party()
    handler = _StatusAwareHandler()
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)-5s %(name)s: %(message)s",
                                             datefmt="%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("pipeline").setLevel(logging.DEBUG if verbose else logging.INFO)


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def _width(stream: TextIO) -> int:
    """Columns of the terminal behind ``stream``: a longer line would wrap and break ``\\r``."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return shutil.get_terminal_size().columns


def format_duration(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``: an ETA a person reads at a glance."""
    minutes, secs = divmod(round(max(seconds, 0.0)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """How far a long step is, for a person: ``what: done/total unit (pct%), detail``.

    When ``stream`` (default stderr) is a terminal, one status line is rewritten in place (at
    most every ``redraw_s``). Otherwise a log line goes to ``logger`` when something changed
    and ``every_s`` seconds have passed, or another tenth of ``total`` is done and at least
    ``min_s`` seconds have passed: a modest rate for files, pipes and forwarded worker output.
    """

    def __init__(self, what: str, unit: str = "", *, every_s: float = 5.0, min_s: float = 1.0,
                 redraw_s: float = 0.1, stream: TextIO | None = None,
                 logger: logging.Logger | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.unit = what, unit
        self.stream = sys.stderr if stream is None else stream
        self.tty = _isatty(self.stream)
        self._every_s, self._min_s, self._redraw_s = every_s, min_s, redraw_s
        self._log = logger or logging.getLogger("pipeline.progress")
        self._clock = clock
        self._line = ""  # the latest status
        self._drawn_at = float("-inf")
        self._logged, self._logged_at = "", clock()
        self._base: tuple[int | None, int] = (None, 0)  # (total, tenths done) at the last line

    def format(self, done: int, total: int | None, detail: str = "") -> str:
        """The status text: ``what: done/total unit (pct%), detail``."""
        count = f"{done:,}/{total:,}" if total else f"{done:,}"
        text = f"{self.what}: {count}{' ' + self.unit if self.unit else ''}"
        if total:
            text += f" ({100 * done / total:.0f}%)"
        return f"{text}, {detail}" if detail else text

    def update(self, done: int, total: int | None = None, detail: str = "") -> None:
        """Record that ``done`` of ``total`` are done; shown or logged when it is due."""
        self._line = self.format(done, total, detail)
        now = self._clock()
        if self.tty:
            if now - self._drawn_at >= self._redraw_s or (total and done >= total):
                self._drawn_at = now
                self.draw()
        elif self._line != self._logged:
            self._maybe_log(done, total, now)

    def _maybe_log(self, done: int, total: int | None, now: float) -> None:
        tenths = min(10, 10 * done // total) if total else 0
        if total != self._base[0]:  # a new total (e.g. another Spark stage): count from here
            self._base = (total, tenths)
        elapsed = now - self._logged_at
        if elapsed >= self._every_s or (tenths > self._base[1] and elapsed >= self._min_s):
            self._log.info("%s", self._line)
            self._logged, self._logged_at, self._base = self._line, now, (total, tenths)

    def draw(self) -> None:
        """Write the status line over the current terminal line (clipped to its width)."""
        global _status
        if not self.tty or not self._line:
            return
        with _status_lock:
            _status = self
            self.stream.write(CLEAR_LINE + self._line[:max(10, _width(self.stream) - 1)])
            self.stream.flush()

    def erase(self) -> None:
        """Clear the terminal line the status is on."""
        if self.tty:
            with _status_lock:
                self.stream.write(CLEAR_LINE)
                self.stream.flush()

    def close(self) -> None:
        """Take the status line off the terminal; what is logged next starts on a clean line."""
        global _status
        with _status_lock:
            if _status is self:
                self.erase()
                _status = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
