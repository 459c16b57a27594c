"""The ``pipeline`` command: help everywhere, clear errors, no stack traces."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.cli import main

COMMANDS = [[], ["doctor"], ["ingest"], ["ingest", "images"], ["ingest", "text"], ["train"],
            ["demo"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_help_on_every_command(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: pipeline")
    if command and command != ["ingest"]:
        assert "--config FILE" in out
        assert "key=value" in out


def test_bad_override_exits_2_naming_the_key(capsys):
    assert main(["train", "--data", "x", "train.epochz=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'train.epochz'" in err
    assert "Traceback" not in err


def test_missing_dataset_is_a_message_not_a_traceback(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert "is not a dataset version" in err
    assert "Traceback" not in err


def test_workers_flag_is_validated_by_the_config(capsys):
    assert main(["train", "--data", "x", "--workers", "0"]) == 2
    assert "config key 'train.workers'" in capsys.readouterr().err


def test_python_dash_m_pipeline_is_the_same_command():
    out = subprocess.run([sys.executable, "-m", "pipeline", "--version"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.startswith("pipeline ")
