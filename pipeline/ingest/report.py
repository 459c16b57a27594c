"""The end-of-job summary: what happened to every input, as a table for people."""

from __future__ import annotations

from pipeline.datasets.manifest import Manifest


def summary_table(manifest: Manifest) -> str:
    """discovered; accepted per split; quarantined per reason; with shares of the total."""
    total = max(manifest.discovered, 1)
    rows: list[tuple[str, int]] = [("discovered", manifest.discovered)]
    rows += [(f"  accepted: {name}", info.rows) for name, info in manifest.splits.items()]
    rows.append(("  quarantined", manifest.quarantined))
    rows += [(f"    {reason}", count) for reason, count in manifest.quarantine.items()]
    width = max(len(label) for label, _ in rows)
    lines = [f"{label.ljust(width)}  {count:>9,}  {100 * count / total:6.2f}%"
             for label, count in rows]
    return "\n".join(lines)


def bad_fraction(manifest: Manifest) -> float:
    """The quarantined share of the inputs: what ``--max-bad-fraction`` gates on."""
    return manifest.quarantined / manifest.discovered if manifest.discovered else 0.0
