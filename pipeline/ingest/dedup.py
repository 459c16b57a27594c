"""Exact duplicates by content hash: which input is kept, and why the others are not."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.datasets.reasons import Reason

MAX_NAMED = 5


@dataclass(frozen=True)
class DuplicateGroup:
    """Inputs with the same content: (path, label) pairs."""

    members: list[tuple[str, str]]


def _names(paths: list[str]) -> str:
    shown = ", ".join(paths[:MAX_NAMED])
    return shown + (f" and {len(paths) - MAX_NAMED} more" if len(paths) > MAX_NAMED else "")


def duplicate_decisions(groups: list[DuplicateGroup], reason: Reason = Reason.DUPLICATE
                        ) -> dict[str, tuple[Reason, str]]:
    """path -> (reason, detail) for every input that is not kept.

    Same label: the smallest path is kept, the others get ``reason`` (``duplicate`` or
    ``near_duplicate``) naming it. Different labels: nobody can say which is right, so all
    are ``conflicting_labels``.
    """
    decisions: dict[str, tuple[Reason, str]] = {}
    for group in groups:
        members = sorted(group.members)
        labels = sorted({label for _, label in members})
        if len(labels) > 1:
            for path, _ in members:
                others = [p for p, _ in members if p != path]
                decisions[path] = (Reason.CONFLICTING_LABELS,
                                   f"same content filed under labels {', '.join(labels)}: "
                                   f"{_names(others)}")
        else:
            kept = members[0][0]
            for path, _ in members[1:]:
                decisions[path] = (reason, f"{reason.replace('_', '-')} of {kept}")
    return decisions


def connected_groups(pairs: list[tuple[str, str]]) -> list[list[str]]:
    """Groups of paths linked by similar pairs, transitively (union-find)."""
    parent: dict[str, str] = {}

    def root(item: str) -> str:
        parent.setdefault(item, item)
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    for left, right in pairs:
        parent[root(left)] = root(right)
    groups: dict[str, list[str]] = {}
    for item in parent:
        groups.setdefault(root(item), []).append(item)
    return sorted(sorted(members) for members in groups.values())
