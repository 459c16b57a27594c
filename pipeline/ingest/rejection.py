"""Why an input was not accepted: raised by per-record functions, stored in quarantine."""

from __future__ import annotations


class Rejected(Exception):
    """An input the pipeline cannot use; ``reason`` is a short code, ``detail`` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
