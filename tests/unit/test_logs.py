"""``Progress``: one line rewritten in place on a terminal, a few plain log lines elsewhere."""

from __future__ import annotations

import io
import logging
import time
from types import SimpleNamespace

import pytest

from pipeline import logs
from pipeline.logs import CLEAR_LINE, Progress, format_duration


class FakeStream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def logged() -> list[str]:
    """Messages of the ``test.progress`` logger."""
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("test.progress")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield messages
    logger.removeHandler(handler)


def _progress(stream: FakeStream, clock: Clock, **kwargs) -> Progress:
    return Progress("decode", "tasks", stream=stream, clock=clock,
                    logger=logging.getLogger("test.progress"), **kwargs)


def test_the_status_text_says_what_how_far_and_the_detail():
    progress = Progress("epoch 2/5", "steps", stream=FakeStream(False))
    assert (progress.format(120, 400, "850 samples/s")
            == "epoch 2/5: 120/400 steps (30%), 850 samples/s")
    assert progress.format(1234, None) == "epoch 2/5: 1,234 steps"


def test_durations_read_at_a_glance():
    assert [format_duration(s) for s in (0, 4.6, 65, 3600 + 61, -3)] == [
        "0:00", "0:05", "1:05", "1:01:01", "0:00"]


def test_on_a_terminal_one_line_is_rewritten_in_place(clock, logged, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    stream = FakeStream(True)
    progress = _progress(stream, clock)
    progress.update(1, 10)
    clock.now += 0.01
    progress.update(2, 10)  # too soon after the last redraw: not drawn
    clock.now += 0.5
    progress.update(3, 10, "stage 4")
    progress.update(10, 10)  # done: always drawn
    progress.close()
    assert stream.getvalue() == (f"{CLEAR_LINE}decode: 1/10 tasks (10%)"
                                 f"{CLEAR_LINE}decode: 3/10 tasks (30%), stage 4"
                                 f"{CLEAR_LINE}decode: 10/10 tasks (100%)"
                                 f"{CLEAR_LINE}")
    assert "\n" not in stream.getvalue() and logged == []


def test_a_long_status_is_clipped_to_the_terminal_width(clock, monkeypatch):
    monkeypatch.setenv("COLUMNS", "30")
    stream = FakeStream(True)
    _progress(stream, clock).update(5, 10, "x" * 100)
    assert stream.getvalue() == CLEAR_LINE + "decode: 5/10 tasks (50%), xxx"


def test_a_log_line_clears_the_status_and_draws_it_again_after(clock, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    stream = FakeStream(True)
    handler = logs._StatusAwareHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("test.progress.handler")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with _progress(stream, clock) as progress:
            progress.update(4, 10)
            logger.warning("something happened")
        logger.warning("after")
    finally:
        logger.removeHandler(handler)
    line = "decode: 4/10 tasks (40%)"
    assert stream.getvalue() == (f"{CLEAR_LINE}{line}{CLEAR_LINE}something happened\n"
                                 f"{CLEAR_LINE}{line}{CLEAR_LINE}after\n")


def test_elsewhere_a_plain_line_every_tenth_or_every_few_seconds(clock, logged):
    stream = FakeStream(False)
    progress = _progress(stream, clock, every_s=5.0, min_s=1.0)
    progress.update(0, 100)
    clock.now += 0.5
    progress.update(12, 100)  # a tenth more, but less than min_s since the start
    clock.now += 0.7
    progress.update(15, 100)  # a tenth more than at the start and 1.2 s: logged
    clock.now += 1.0
    progress.update(19, 100)  # the same tenth: not yet
    clock.now += 4.0
    progress.update(19, 100)  # 5 s since the last line: logged
    clock.now += 10.0
    progress.update(19, 100)  # nothing changed: not repeated
    clock.now += 1.0
    progress.update(45, 100, "stage 3")  # tenths 4 > 1
    progress.close()
    assert logged == ["decode: 15/100 tasks (15%)", "decode: 19/100 tasks (19%)",
                      "decode: 45/100 tasks (45%), stage 3"]
    assert stream.getvalue() == ""  # nothing drawn, nothing erased


def test_a_new_total_counts_its_tenths_from_where_it_starts(clock, logged):
    progress = _progress(FakeStream(False), clock, every_s=5.0, min_s=1.0)
    progress.update(0, 10)
    clock.now += 2.0
    progress.update(9, 10)
    clock.now += 2.0
    progress.update(1, 20)  # another stage: 5% of it is no tenth more than its start
    clock.now += 2.0
    progress.update(3, 20)  # 15%: one tenth more than where this total started
    assert logged == ["decode: 9/10 tasks (90%)", "decode: 3/20 tasks (15%)"]


def test_at_most_every_min_s_even_when_tenths_pass_quickly(clock, logged):
    progress = _progress(FakeStream(False), clock, every_s=10.0, min_s=10.0)
    for step in range(1, 401):
        clock.now += 0.125  # 400 steps in 50 s, a tenth every 5 s
        progress.update(step, 400)
    assert logged == [f"decode: {step}/400 tasks ({step // 4}%)"
                      for step in (80, 160, 240, 320, 400)]


class FakeTracker:
    """Spark's status tracker with two stages running."""

    def getActiveStageIds(self) -> list[int]:  # Spark's names
        return [3, 4]

    def getStageInfo(self, stage_id: int) -> SimpleNamespace:
        return SimpleNamespace(numCompletedTasks={3: 2, 4: 3}[stage_id],
                               numTasks={3: 10, 4: 5}[stage_id])


def test_spark_progress_reports_the_tasks_of_the_running_stages(monkeypatch, caplog):
    from pipeline.spark import SparkProgress

    spark = SimpleNamespace(sparkContext=SimpleNamespace(statusTracker=FakeTracker))
    monkeypatch.setattr(SparkProgress, "POLL_S", 0.01)
    caplog.set_level(logging.INFO, logger="pipeline.spark")
    with SparkProgress(spark, "decode", every_s=0.0):
        deadline = time.monotonic() + 10
        while not caplog.messages and time.monotonic() < deadline:
            time.sleep(0.01)
    assert caplog.messages[0] == "decode: 5/15 tasks (33%), stages 3, 4"
    assert len(set(caplog.messages)) == 1  # the same status is not logged again


def test_log_lines_never_carry_a_uris_password_or_signed_token():
    import io

    stream = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        logs.setup_logging()
        root.handlers[0].setStream(stream)
        logging.getLogger("pipeline.test").info(
            "reading https://acct.blob.core.windows.net/c/raw?sv=2024&sig=S3CRET%3D and "
            "postgresql://alice:hunter2@db:5432/mlflow; learning_rate=0.01")
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    line = stream.getvalue()
    assert "S3CRET" not in line and "hunter2" not in line, line
    assert "sig=<redacted>" in line and "alice:<redacted>@db" in line
    assert "sv=2024" in line and "learning_rate=0.01" in line  # nothing else touched
