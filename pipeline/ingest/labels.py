"""Labels from the folder layout: ``ROOT/<label>/<file>``."""

from __future__ import annotations

from pipeline.datasets.reasons import Reason
from pipeline.ingest.rejection import Rejected


def label_from_path(path: str, root: str) -> str:
    """The label folder of ``path`` under ``root`` (both fully qualified URIs)."""
    root = root.rstrip("/") + "/"
    if not path.startswith(root):
        raise Rejected(Reason.OUTSIDE_ROOT, f"{path} is not under {root}")
    parts = path[len(root):].split("/")
    if len(parts) != 2 or not parts[0]:
        where = "directly in the input root" if len(parts) == 1 else "nested below a label folder"
        raise Rejected(Reason.NO_LABEL, f"file is {where}; expected ROOT/<label>/<file>")
    return parts[0]


def build_label_map(labels: set[str]) -> dict[str, int]:
    """Label name -> index, in sorted order so the same label set gives the same map."""
    return {name: index for index, name in enumerate(sorted(labels))}
