"""The notebooks in notebooks/, executed with nbclient on the outputs of the session's demo run
(tests/e2e/conftest.py). Executed copies, with their outputs, go to test-artifacts/notebooks/."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
ARTIFACTS = REPO / "test-artifacts" / "notebooks"


@pytest.fixture(scope="module")
def kernel_dirs(tmp_path_factory) -> list[str]:
    """A ``python3`` kernel spec running this interpreter (ipykernel in .venv); nothing global
    is registered, and a user's own ``python3`` kernel cannot be picked up instead."""
    root = tmp_path_factory.mktemp("kernels")
    (root / "python3").mkdir()
    (root / "python3" / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python"}))
    return [str(root)]


def execute(notebook: str, cwd: Path, copy_name: str, kernel_dirs: list[str],
            **env: str) -> dict[str, nbformat.NotebookNode]:
    """Run ``notebook`` in ``cwd`` with ``env`` (PIPELINE_* variables) -> code cells by id."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(NOTEBOOKS / notebook, as_version=4)
    km = KernelManager(kernel_name="python3",
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=kernel_dirs))
    assert km.kernel_spec.argv[0] == sys.executable
    kernel_env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")} | env
    client = NotebookClient(nb, km=km, timeout=300, resources={"metadata": {"path": str(cwd)}})
    error = None
    try:
        client.execute(cleanup_kc=True, env=kernel_env)  # then shuts the kernel down
    except CellExecutionError as exc:
        error = exc
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, ARTIFACTS / copy_name)
    assert error is None, f"{notebook} failed (see {ARTIFACTS / copy_name}):\n{error}"
    cells = {cell.id: cell for cell in nb.cells if cell.cell_type == "code"}
    for cell in cells.values():
        assert cell.execution_count is not None, cell.id
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.id
    return cells


def text(cell) -> str:
    """What a cell printed and displayed as text."""
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream" and output.name == "stdout":
            parts.append(output.text)
        elif output.output_type in ("display_data", "execute_result"):
            parts.append(output.data.get("text/plain", ""))
    return "\n".join(parts)


def displays(cell) -> list[str]:
    """The text/plain form of each object a cell displayed (its tables)."""
    return [output.data.get("text/plain", "") for output in cell.outputs
            if output.output_type in ("display_data", "execute_result")
            and "image/png" not in output.data]


def pngs(cell) -> int:
    return sum("image/png" in output.get("data", {}) for output in cell.outputs)


def table(plain: str) -> dict[str, list[str]]:
    """A pandas DataFrame's text/plain form -> {index value: [column values]}; the first line
    names the columns, rows with another number of fields (the index name) are left out."""
    lines = plain.strip().splitlines()
    width = len(lines[0].split())
    rows = [line.split() for line in lines[1:]]
    return {row[0]: row[1:] for row in rows if len(row) == width + 1}


def test_notebooks_are_stored_valid_and_without_outputs():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.nbformat == 4
        assert nb.metadata.kernelspec.name == "python3"
        code = [cell for cell in nb.cells if cell.cell_type == "code"]
        assert code, path.name
        assert all(not cell.outputs and cell.execution_count is None for cell in code), path.name
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} >= {"explore_dataset.ipynb",
                                                           "compare_runs.ipynb"}


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the first pays for the demo (bounded at 900 s)
@pytest.mark.parametrize("name", ["digits", "reviews"])
def test_explore_dataset_notebook(demo_ok, kernel_dirs, name):
    from pipeline.datasets.manifest import read_manifest
    from pipeline.storage import to_uri

    manifest = read_manifest(to_uri(demo_ok.path / "data" / "datasets" / name))
    # the digits through the notebook's own default, the reviews through PIPELINE_DATASET
    env = {} if name == "digits" else {"PIPELINE_DATASET": f"./data/datasets/{name}"}
    cells = execute("explore_dataset.ipynb", demo_ok.path, f"explore_dataset-{name}.ipynb",
                    kernel_dirs, **env)

    assert f"kind        {manifest.kind} " in text(cells["version"])
    counts = table(displays(cells["counts"])[0])
    assert {split: int(values[0]) for split, values in counts.items()} == {
        **{split: info.rows for split, info in manifest.splits.items()},
        "quarantine": manifest.quarantined, "discovered": manifest.discovered}

    per_label = table(displays(cells["labels-table"])[0])
    header = displays(cells["labels-table"])[0].strip().splitlines()[0].split()
    assert header == ["train", "val", "test", "total"]
    assert set(per_label) == set(manifest.labels)
    for label, values in per_label.items():
        expected = [manifest.splits[split].per_label.get(label, 0) for split in header[:3]]
        assert [int(v) for v in values] == [*expected, sum(expected)], label
    assert pngs(cells["labels-chart"]) == 1

    if manifest.quarantine:  # per reason: the Parquet table's count, the manifest's count
        reasons = table(displays(cells["quarantine"])[0])
        assert {reason: [int(v) for v in values] for reason, values in reasons.items()} == {
            reason: [n, n] for reason, n in manifest.quarantine.items()}
        assert set(manifest.quarantine) <= set(displays(cells["quarantine"])[1].split())
    else:
        assert "no input was quarantined (manifest: 0)" in text(cells["quarantine"])

    if manifest.kind == "images":
        per_label_shown = min(4, *(manifest.splits["train"].per_label.values()))
        assert f"{per_label_shown * manifest.num_classes} training images decoded" in text(
            cells["samples"])
        assert pngs(cells["samples-grid"]) == 1
        assert "text length histogram skipped" in text(cells["lengths"])
        assert pngs(cells["lengths"]) == 0
    else:
        assert "no images in a text dataset: sample grid skipped" in text(cells["samples"])
        assert pngs(cells["samples-grid"]) == 0
        rows = manifest.splits["train"].rows
        assert re.search(rf"^{rows} training texts; tokens: median \d+", text(cells["lengths"]),
                         re.M)
        assert pngs(cells["lengths"]) == 1

    # the version's statistics: each number's mean as the job recorded it in the manifest
    shown = table(displays(cells["statistics"])[0])
    means = manifest.extra["statistics"]["means"]
    assert set(shown) == set(means)
    for name, mean in means.items():
        assert float(shown[name][0]) == pytest.approx(mean, rel=1e-3, abs=1e-3), name
    assert pngs(cells["statistics"]) == 1


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_compare_runs_notebook(demo_ok, kernel_dirs):
    out = demo_ok.out.stdout
    run_ids = [re.search(r"MLflow run id (\w+)", out).group(1),
               re.search(r"text MLflow run id (\w+)", out).group(1)]
    assert run_ids[0] != run_ids[1]
    cells = execute("compare_runs.ipynb", demo_ok.path, "compare_runs.ipynb", kernel_dirs)

    store = text(cells["store"])
    assert f"tracking store sqlite:///{demo_ok.path.resolve() / 'mlruns.db'}" in store
    runs = text(cells["runs"])
    assert "2 training runs by val_accuracy:" in runs
    [shown] = displays(cells["runs"])  # the table, one row per run, indexed by run id
    assert set(re.findall(r"^([0-9a-f]{32})\s", shown, re.M)) == set(run_ids)
    assert all(run_id in runs for run_id in run_ids)

    assert pngs(cells["curves"]) == 1
    curves = text(cells["curves"])
    for run_id in run_ids:  # train.epochs=2: two points per metric and run
        assert f"{run_id} val_accuracy: 2 epochs, val_loss: 2 epochs, accuracy: 2 epochs, " \
               "loss: 2 epochs" in curves
