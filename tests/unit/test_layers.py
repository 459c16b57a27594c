"""dev/check_layers.py on small module trees written for each test, and on the real pipeline/."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO


def _load_checker():
    spec = importlib.util.spec_from_file_location("check_layers", REPO / "dev" / "check_layers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


layers = _load_checker()

# a small tree that follows the table: lazy, relative and `from pipeline import x` imports
CLEAN = {
    "__init__.py": '__version__ = "1"\n',
    "errors.py": "class PipelineError(Exception): ...\n",
    "config.py": "from pipeline.errors import PipelineError\n",
    "storage.py": "from . import errors\n",
    "spark.py": "from pipeline.config import x\n",
    "datasets/__init__.py": "",
    "datasets/reader.py": "from .. import storage\nfrom . import schema\n",
    "datasets/schema.py": "import petastorm.unischema\n",
    "tracking/runs.py": "import mlflow\nfrom pipeline.datasets import reader\n",
    "ingest/job.py": "def run():\n    import pipeline.datasets.reader\n",
    "inference/job.py": "from pipeline.ingest import job\n",
    "train/worker.py": "import horovod.tensorflow as hvd\nfrom pipeline import tracking\n",
    "retrain/workflow.py": "from pipeline.train import worker\nfrom pipeline.ingest import job\n",
    "cli.py": "from pipeline import __version__, retrain\nfrom pipeline.config import x\n",
    "__main__.py": "from pipeline.cli import main\n",
}


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pipeline"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root


def _problems(tmp_path: Path, **changed: str) -> list[str]:
    """The checker's report on CLEAN with some files (``dir__name`` for dir/name.py) changed."""
    files = {**CLEAN, **{name.replace("__", "/") + ".py": text for name, text in changed.items()}}
    return layers.check(_tree(tmp_path, files))


def test_a_tree_that_follows_the_table_passes(tmp_path, capsys):
    root = _tree(tmp_path, CLEAN)
    assert layers.check(root) == []
    assert layers.main([str(root)]) == 0
    assert "every import follows the layer table" in capsys.readouterr().out


def test_the_units_and_their_imports_are_found(tmp_path):
    imports, problems = layers.collect(_tree(tmp_path, CLEAN))
    found = {(i.source, i.target) for i in imports}
    assert problems == []
    assert {("storage", "errors"), ("datasets", "storage"), ("ingest", "datasets"),
            ("cli", "__init__"), ("cli", "retrain"), ("tracking", "mlflow")} <= found
    assert ("datasets", "datasets") not in found  # inside a unit: no edge


def test_a_lazy_import_up_the_table_is_named_with_file_and_line(tmp_path, capsys):
    lazy = "def read():\n    from pipeline.samples import digits\n"
    problems = _problems(tmp_path, datasets__reader=lazy)
    assert problems == ["pipeline/datasets/reader.py:2: datasets imports samples: an import up "
                        "the layers (datasets: layer 1, samples: layer 2)"]
    assert layers.main([str(tmp_path / "pipeline")]) == 1
    assert "pipeline/datasets/reader.py:2" in capsys.readouterr().out


def test_a_relative_import_up_the_table_is_caught(tmp_path):
    (problem,) = _problems(tmp_path, storage="from .config import x\nfrom .samples import dl\n")
    assert problem.startswith("pipeline/storage.py:2: storage imports samples: an import up")


def test_an_import_up_the_table_that_closes_a_cycle_is_named_twice(tmp_path):
    problems = _problems(tmp_path, datasets__schema="from pipeline.train import worker\n")
    assert problems[0].startswith("pipeline/datasets/schema.py:1: datasets imports train: an "
                                  "import up the layers")
    assert problems[1].startswith("import cycle between datasets, tracking, train: ")
    assert len(problems) == 2


def test_a_cycle_is_caught_even_within_one_layer(tmp_path):
    (problem,) = _problems(tmp_path, errors="from pipeline.config import defaults\n")
    assert problem.startswith("import cycle between config, errors: ")
    assert "pipeline/config.py:1 (config -> errors)" in problem
    assert "pipeline/errors.py:1 (errors -> config)" in problem


@pytest.mark.parametrize(("changed", "reason"), [
    ({"storage": "from pipeline import spark\n"}, "adapters import only down the order"),
    ({"spark": "from pipeline.datasets import reader\n"}, "adapters import only down"),
    ({"train__worker": "from pipeline.evaluation import scoring\n"}, "stages do not import"),
    ({"evaluation__job": "from pipeline.inference import job\n"}, "stages do not import"),
    ({"ingest__job": "from pipeline.samples import digits\n"}, "stages do not import"),
    ({"ingest__job": "import mlflow.tracking\n"}, "mlflow is imported only in pipeline/tracking/"),
    ({"tracking__runs": "from petastorm import make_reader\n"}, "only in pipeline/datasets/"),
    ({"cli": "import horovod\n"}, "horovod is imported only in pipeline/train/"),
    ({"sweep": "import optuna\n"}, "optuna is imported only in pipeline/train/"),
])
def test_each_rule_of_the_table_is_enforced(tmp_path, changed, reason):
    problems = _problems(tmp_path, **changed)
    assert len(problems) == 1 and reason in problems[0], problems


def test_a_unit_missing_from_the_table_fails_and_says_where_to_add_it(tmp_path):
    problems = _problems(tmp_path, plugins="import os\n", cli="from pipeline.extras import x\n")
    assert ("pipeline/plugins.py: unit 'plugins' is not in the layer table; add it to LAYERS in "
            "dev/check_layers.py") in problems
    assert any(p.startswith("pipeline/cli.py:1: cli imports extras: unit 'extras' is not in")
               for p in problems), problems


def test_the_real_pipeline_follows_the_table():
    problems = layers.check(REPO / "pipeline")
    assert problems == [], "\n".join(problems)
