"""Why an input was not accepted: raised by per-record functions, stored in quarantine."""

from __future__ import annotations

from pipeline.datasets.reasons import Reason


class Rejected(Exception):
    """An input the pipeline cannot use; ``reason`` is a ``Reason``, ``detail`` says why."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
