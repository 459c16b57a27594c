"""Progress of the running Spark stages, shown while a block of Spark work runs."""

from __future__ import annotations

import logging
import threading

from pipeline.logs import Progress

log = logging.getLogger(__name__)


class SparkProgress:
    """Follows the running Spark stages while the block runs: their tasks done of the total, on
    a line rewritten in place on a terminal, else logged every ``every_s`` or each tenth."""

    POLL_S = 0.5  # how often the status tracker is asked (cheap: no job runs for it)

    def __init__(self, spark, what: str, every_s: float = 5.0) -> None:
        self._tracker = spark.sparkContext.statusTracker()
        self._progress = Progress(what, "tasks", every_s=every_s, logger=log)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.POLL_S):
            done = total = 0
            stages = []
            for stage_id in self._tracker.getActiveStageIds():
                info = self._tracker.getStageInfo(stage_id)
                if info is not None:
                    done, total = done + info.numCompletedTasks, total + info.numTasks
                    stages.append(str(stage_id))
            if stages:
                self._progress.update(done, total, f"stage{'s' * (len(stages) > 1)} "
                                                   f"{', '.join(stages)}")

    def __enter__(self) -> SparkProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self._progress.close()
