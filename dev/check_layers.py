#!/usr/bin/env python3
"""The layer table of ``pipeline/``: which unit (a subpackage such as ``pipeline/datasets`` or a
top-level module such as ``pipeline/config.py``) may import which, lazy imports included.

``python dev/check_layers.py [PACKAGE_DIR]`` exits 1 naming each import (file:line) that goes up
the table, breaks the adapters' order, joins two stages, closes a cycle, or imports mlflow,
petastorm, horovod or optuna outside its home unit. Standard library only.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import NamedTuple

LAYERS: dict[str, int] = {
    **dict.fromkeys(["errors", "logs", "config", "redaction", "__init__", "resources"], 0),  # base
    **dict.fromkeys(["storage", "spark", "datasets", "tracking"], 1),  # adapters
    **dict.fromkeys(["ingest", "train", "evaluation", "inference", "samples", "validation"],
                    2),  # stages
    **dict.fromkeys(["retrain", "sweep", "demo"], 3),  # workflows
    **dict.fromkeys(["cli", "doctor", "submit", "__main__"], 4),  # entry points
}
ADAPTER_ORDER = ["storage", "spark", "datasets", "tracking"]  # each imports only those before it
STAGES = 2  # they talk through dataset versions and the tracker, but for STAGE_IMPORTS:
# inference reuses ingest's per-record preprocessing; training packages inference's raw-input
# model beside the Keras model it trained; evaluation's robustness encodes misspelt text again
# with ingest's tokeniser, and ``pipeline explain`` prepares raw files as ingest did
STAGE_IMPORTS = {("inference", "ingest"), ("train", "inference"), ("evaluation", "ingest")}
HOMES = {"mlflow": "tracking", "petastorm": "datasets", "horovod": "train", "optuna": "train"}
ADD_IT = "add it to LAYERS in dev/check_layers.py"


class Import(NamedTuple):
    source: str  # the importing unit
    target: str  # the imported unit, or a third-party top-level package
    where: str  # file:line


def unit_of(path: Path, root: Path) -> str:
    """``pipeline/datasets/x.py`` -> ``datasets``; ``pipeline/config.py`` -> ``config``."""
    first = path.relative_to(root).parts[0]
    return first[:-3] if first.endswith(".py") else first


def imported(node: ast.Import | ast.ImportFrom, path: Path, root: Path) -> list[str]:
    """Units of ``root`` (and third-party packages of HOMES) that one import statement names."""
    if isinstance(node, ast.Import):
        dotted = [alias.name.split(".") for alias in node.names]
    else:
        module = node.module.split(".") if node.module else []
        if node.level:  # relative: from the module's package (for __init__.py: itself)
            package = [root.name, *path.relative_to(root).parts[:-1]]
            module = package[: len(package) - node.level + 1] + module
        if module != [root.name]:
            dotted = [module]
        else:  # from pipeline import x: a submodule is a unit, anything else is __init__'s
            dotted = [[root.name, a.name if (root / a.name).is_dir()
                       or (root / f"{a.name}.py").is_file() else "__init__"] for a in node.names]
    return [(parts[1:] or ["__init__"])[0] if parts[0] == root.name else parts[0]
            for parts in dotted if parts[0] == root.name or parts[0] in HOMES]


def collect(root: Path) -> tuple[list[Import], list[str]]:
    """Every import between units (and of HOMES) under ``root``, and the files that fail."""
    imports, problems = [], []
    for path in sorted(root.rglob("*.py")):
        shown, source = path.relative_to(root.parent), unit_of(path, root)
        if source not in LAYERS:
            problems.append(f"{shown}: unit {source!r} is not in the layer table; {ADD_IT}")
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except SyntaxError as exc:
            problems.append(f"{shown}:{exc.lineno}: cannot be parsed: {exc.msg}")
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                imports += [Import(source, target, f"{shown}:{node.lineno}")
                            for target in imported(node, path, root) if target != source]
    return imports, problems


def broken_rule(source: str, target: str) -> str | None:
    """Why ``source`` may not import ``target``, or None when the table allows it."""
    if target in HOMES:
        return None if HOMES[target] == source else (
            f"{target} is imported only in pipeline/{HOMES[target]}/")
    if target not in LAYERS:
        return f"unit {target!r} is not in the layer table; {ADD_IT}"
    low, high = LAYERS[target], LAYERS[source]
    if low > high:
        return f"an import up the layers ({source}: layer {high}, {target}: layer {low})"
    if source in ADAPTER_ORDER and target in ADAPTER_ORDER and (
            ADAPTER_ORDER.index(target) > ADAPTER_ORDER.index(source)):
        return f"adapters import only down the order {' < '.join(ADAPTER_ORDER)}"
    if low == high == STAGES and (source, target) not in STAGE_IMPORTS:
        return "stages do not import each other; they meet in dataset versions and the tracker"
    return None


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """The units ``start`` imports directly or through others (itself if on a cycle)."""
    seen, todo = set[str](), [start]
    while todo:
        for unit in graph.get(todo.pop(), ()):
            if unit not in seen:
                seen.add(unit)
                todo.append(unit)
    return seen


def cycles(imports: list[Import]) -> list[list[str]]:
    """The groups of units that import each other in a circle (strongly connected, > 1)."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.target in LAYERS:
            graph.setdefault(imp.source, set()).add(imp.target)
    reach = {unit: _reachable(graph, unit) for unit in graph}
    groups: list[list[str]] = []
    for unit in sorted(graph):
        if unit in reach[unit] and not any(unit in group for group in groups):
            groups.append(sorted(u for u in reach[unit] if unit in reach.get(u, ())))
    return groups


def check(root: Path) -> list[str]:
    """Every problem of the tree under ``root`` (a package folder), one line each."""
    imports, problems = collect(root)
    for imp in imports:
        if (reason := broken_rule(imp.source, imp.target)) is not None:
            problems.append(f"{imp.where}: {imp.source} imports {imp.target}: {reason}")
    for group in cycles(imports):
        edges = {(i.source, i.target): i.where for i in reversed(imports)
                 if i.source in group and i.target in group}
        problems.append(f"import cycle between {', '.join(group)}: " + "; ".join(
            f"{where} ({s} -> {t})" for (s, t), where in sorted(edges.items())))
    return problems


def main(argv: list[str]) -> int:
    """Print every problem of the package folder ``argv[0]`` (default: pipeline/); 1 if any."""
    root = Path(argv[0]) if argv else Path(__file__).resolve().parents[1] / "pipeline"
    problems = check(root.resolve())
    print("\n".join(problems) or f"{root.name}: every import follows the layer table")
    if problems:
        print(f"{len(problems)} problem(s) with the layer table (dev/check_layers.py)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
