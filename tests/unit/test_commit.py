"""Committing a dataset version (pipeline/datasets/commit.py) on local folders: no Spark."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest

from pipeline import storage
from pipeline.datasets import commit
from pipeline.datasets.commit import OutputExistsError
from pipeline.storage import to_uri


def _version(path: Path, label: str) -> str:
    """A finished dataset version in ``path`` (its manifest says ``label``); its URI."""
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(label)
    (path / "train").mkdir()
    (path / "train" / "part-0.parquet").write_text(label)
    return to_uri(path)


def _label(path: Path) -> str:
    return (path / "manifest.json").read_text()


def test_commit_into_a_new_path_moves_the_staged_version(tmp_path):
    output = tmp_path / "digits"
    staging = _version(Path(urlparse(commit.staging_uri(to_uri(output), "error")).path), "new")
    assert commit.commit(staging, to_uri(output), "error") == to_uri(output)
    assert _label(output) == "new" and (output / "train" / "part-0.parquet").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["digits"]  # the staging folder is gone


def test_staging_is_hidden_beside_the_output_or_inside_a_folder_of_versions(tmp_path):
    output = to_uri(tmp_path / "digits")
    beside = {commit.staging_uri(output, "overwrite") for _ in range(3)}
    assert len(beside) == 3  # each job its own
    assert all(u.startswith(to_uri(tmp_path) + "/.digits.staging-") for u in beside)
    assert commit.staging_uri(output, "new-version").startswith(output + "/.staging-")


def test_overwrite_swaps_the_versions_and_removes_the_previous_one(tmp_path):
    output = tmp_path / "digits"
    _version(output, "old")
    staging = _version(tmp_path / ".digits.staging-1", "new")
    assert commit.commit(staging, to_uri(output), "overwrite") == to_uri(output)
    assert _label(output) == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["digits"]  # no .previous-, no staging


def _vanish(staging: Path, monkeypatch) -> None:
    storage.delete_dir(to_uri(staging))


def _fail_second_rename(staging: Path, monkeypatch) -> None:
    real, calls = storage.rename, []

    def rename(src: str, dst: str) -> None:
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError("injected: the final rename failed")
        real(src, dst)

    monkeypatch.setattr(storage, "rename", rename)


@pytest.mark.parametrize("failure", [_vanish, _fail_second_rename])
def test_overwrite_whose_final_rename_fails_puts_the_old_version_back(tmp_path, monkeypatch,
                                                                      failure):
    output = tmp_path / "digits"
    _version(output, "old")
    staging = tmp_path / ".digits.staging-1"
    _version(staging, "new")
    failure(staging, monkeypatch)
    with pytest.raises(OSError):
        commit.commit(to_uri(staging), to_uri(output), "overwrite")
    assert _label(output) == "old"
    assert (output / "train" / "part-0.parquet").read_text() == "old"
    assert not [p for p in tmp_path.iterdir() if ".previous-" in p.name]


def test_new_versions_are_numbered_and_latest_names_the_newest(tmp_path):
    versions = tmp_path / "versions"
    first = _version(versions / ".staging-a", "first")
    assert commit.commit(first, to_uri(versions), "new-version") == to_uri(versions / "v0001")
    assert (versions / "LATEST").read_text() == "v0001\n"
    second = _version(versions / ".staging-b", "second")
    assert commit.commit(second, to_uri(versions), "new-version") == to_uri(versions / "v0002")
    assert (versions / "LATEST").read_text() == "v0002\n"
    assert sorted(p.name for p in versions.iterdir()) == ["LATEST", "v0001", "v0002"]
    assert (_label(versions / "v0001"), _label(versions / "v0002")) == ("first", "second")


def test_next_version_name_follows_the_highest_number(tmp_path):
    versions = tmp_path / "versions"
    assert commit.next_version_name(to_uri(versions)) == "v0001"  # not even created yet
    for name in ("v0001", "v0009", "vx", "other", ".staging-a"):
        (versions / name).mkdir(parents=True)
    assert commit.next_version_name(to_uri(versions)) == "v0010"


def test_claim_skips_a_number_taken_between_listing_and_rename(tmp_path, monkeypatch):
    versions = tmp_path / "versions"
    _version(versions / "v0001", "ours before")
    staging = _version(versions / ".staging-a", "ours")
    real = storage.rename

    def rename(src: str, dst: str) -> None:
        if dst.endswith("/v0002") and not (versions / "v0002").exists():
            _version(versions / "v0002", "theirs")  # another job commits v0002 right now
        real(src, dst)

    monkeypatch.setattr(storage, "rename", rename)
    assert commit.claim_next_version(staging, to_uri(versions)) == to_uri(versions / "v0003")
    assert (_label(versions / "v0002"), _label(versions / "v0003")) == ("theirs", "ours")
    assert not (versions / ".staging-a").exists()


def test_claim_skips_a_number_that_exists_when_checked(tmp_path, monkeypatch):
    versions = tmp_path / "versions"
    _version(versions / "v0001", "theirs")
    staging = _version(versions / ".staging-a", "ours")
    names = iter(["v0001"])  # a listing taken before v0001 appeared
    real = commit.next_version_name
    monkeypatch.setattr(commit, "next_version_name", lambda uri: next(names, None) or real(uri))
    assert commit.claim_next_version(staging, to_uri(versions)) == to_uri(versions / "v0002")
    assert _label(versions / "v0001") == "theirs"


def test_claim_reports_a_rename_that_fails_for_another_reason(tmp_path):
    versions = tmp_path / "versions"
    versions.mkdir()
    with pytest.raises(FileNotFoundError):  # the staged version is gone: not a lost race
        commit.claim_next_version(to_uri(versions / ".staging-gone"), to_uri(versions))
    assert list(versions.iterdir()) == []


def test_check_output_refuses_what_the_mode_may_not_replace(tmp_path):
    version = _version(tmp_path / "digits", "old")
    missing = to_uri(tmp_path / "missing")
    with pytest.raises(OutputExistsError, match="--mode overwrite"):
        commit.check_output(version, "error")
    assert issubclass(OutputExistsError, FileExistsError)
    commit.check_output(missing, "error")
    commit.check_output(version, "overwrite")
    with pytest.raises(OutputExistsError, match="needs a folder of versions"):
        commit.check_output(version, "new-version")
    _version(tmp_path / "versions" / "v0001", "v1")
    commit.check_output(to_uri(tmp_path / "versions"), "new-version")
    commit.check_output(missing, "new-version")


def test_commit_in_error_mode_refuses_an_output_that_appeared_meanwhile(tmp_path):
    output = tmp_path / "digits"
    staging = _version(tmp_path / ".digits.staging-1", "new")
    _version(output, "theirs")
    with pytest.raises(OutputExistsError):
        commit.commit(staging, to_uri(output), "error")
    assert _label(output) == "theirs"
    assert _label(tmp_path / ".digits.staging-1") == "new"


# --- interrupts during the overwrite swap ------------------------------------------------------

_SWAP_INTERRUPTED = """
import os, signal, sys
from pipeline import storage
from pipeline.datasets import commit

output, name, handler = sys.argv[1], sys.argv[2], sys.argv[3]
number = getattr(signal, name)
def stop(*_):
    raise KeyboardInterrupt

if handler == "raise":  # as pipeline's CLI does for SIGTERM
    signal.signal(number, stop)
real, calls = storage.rename, []

def rename(src, dst):
    real(src, dst)
    calls.append(dst)
    if len(calls) == 1:  # between the swap's two renames
        os.kill(os.getpid(), number)

storage.rename = rename
pending = commit.begin(output, "overwrite")
os.makedirs(pending.data_uri[len("file://"):] + "/train")
with open(pending.data_uri[len("file://"):] + "/train/part-0.parquet", "w") as f:
    f.write("new")
try:  # as the writer does
    pending.finish("new")
except BaseException:
    pending.abort()
    raise
"""


@pytest.mark.parametrize(("name", "handler"), [("SIGTERM", "default"), ("SIGTERM", "raise"),
                                               ("SIGINT", "default")])
def test_an_interrupt_during_the_overwrite_swap_never_leaves_the_output_empty(tmp_path, name,
                                                                            handler):
    import subprocess
    import sys

    from tests.conftest import REPO

    output = tmp_path / "digits"
    _version(output, "old")
    done = subprocess.run([sys.executable, "-c", _SWAP_INTERRUPTED, to_uri(output), name,
                           handler], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0, done.stderr  # the interrupt still stops the process
    assert _label(output) in ("old", "new"), sorted(p.name for p in tmp_path.iterdir())
    assert (output / "train" / "part-0.parquet").read_text() == _label(output)
    kept = [p for p in tmp_path.iterdir() if ".staging-" in p.name]
    if _label(output) == "old":  # not swapped: the finished version is kept beside it
        assert [_label(p) for p in kept] == ["new"]
    else:
        assert kept == []


def test_abort_keeps_a_finished_version_that_was_not_committed(tmp_path, monkeypatch):
    output = tmp_path / "digits"
    _version(output, '{"v": "old"}')
    pending = commit.begin(to_uri(output), "overwrite")

    def fail(src: str, dst: str) -> None:
        raise OSError("injected: rename failed")

    monkeypatch.setattr(storage, "rename", fail)
    with pytest.raises(OSError):
        pending.finish('{"v": "new"}')
    pending.abort()
    staged = Path(urlparse(pending.data_uri).path)
    assert (_label(staged), _label(output)) == ('{"v": "new"}', '{"v": "old"}')
    found = commit.garbage(to_uri(output))
    assert [(g.uri, "interrupted" in g.why) for g in found] == [(pending.data_uri, True)]
    unfinished = commit.begin(to_uri(tmp_path / "other"), "error")
    unfinished.abort()  # nothing finished: removed
    assert not Path(urlparse(unfinished.data_uri).path).exists()
