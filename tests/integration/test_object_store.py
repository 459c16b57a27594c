"""The storage layer and the commit protocol on a real S3 API (moto_server over HTTP on
127.0.0.1), configured only through the standard AWS environment."""

from __future__ import annotations

import json
import threading

import pytest

from pipeline import storage
from pipeline.datasets import commit
from pipeline.datasets.manifest import MANIFEST_NAME, NotADatasetError, open_version


def _manifest(label: str) -> str:
    """A minimal manifest whose ``source`` tells which writer made it."""
    return json.dumps({"kind": "images", "source": label, "created_at": "now", "config": {},
                       "label_map": {}, "discovered": 0, "splits": {}, "quarantine": {},
                       "schema": [], "fingerprint": label})


def _write(pending: commit.Pending, label: str) -> str:
    storage.write_text(storage.join(pending.data_uri, "train", "part-0.parquet"), label)
    return pending.finish(_manifest(label))


def test_files_on_s3_through_the_environment_alone(s3):
    root = s3.bucket("plain")
    storage.write_text(f"{root}/a/b.txt", "hello")
    assert storage.read_text("s3a://plain/a/b.txt") == "hello"  # s3a is read as s3
    assert storage.list_files(root) == [("s3://plain/a/b.txt", 5)]
    assert "a/b.txt" in s3.keys("plain")


def test_locations_that_cannot_work_are_named_before_any_work(s3, monkeypatch):
    with pytest.raises(storage.LocationError, match="bucket 'no-such-bucket' does not exist"):
        storage.check_location("s3://no-such-bucket/raw")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(storage.LocationError, match="s3://plain/x cannot be reached"):
        storage.check_location("s3://plain/x")


def test_create_if_absent_has_exactly_one_winner(s3):
    uri = s3.bucket("claims") + "/v0001/.claim"
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(storage.write_new(uri, "x")))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]


def test_two_new_version_writers_get_two_versions(s3):
    root = s3.bucket("versions") + "/ds"
    first, second = commit.begin(root, "new-version"), commit.begin(root, "new-version")
    assert first.data_uri != second.data_uri
    assert _write(second, "b").endswith("/v0002") and _write(first, "a").endswith("/v0001")
    url, manifest = open_version(root)
    assert url.endswith("/v0002") and manifest.source == "b"
    assert commit.garbage(root) == []


def test_a_writer_killed_before_its_manifest_leaves_no_version(s3):
    root = s3.bucket("crash") + "/ds"
    pending = commit.begin(root, "new-version")
    storage.write_text(storage.join(pending.data_uri, "train", "part-0.parquet"), "half")
    with pytest.raises(NotADatasetError):
        open_version(root)  # claimed and half-written: no reader accepts it
    assert [g.why for g in commit.garbage(root)] == [
        "claimed or written, never committed (no manifest.json)"]
    assert commit.begin(root, "new-version").data_uri.endswith("/v0002")  # the name stays taken
    deleted = commit.delete_garbage(commit.garbage(root), older_than_s=0)
    assert [g.uri for g in deleted] == [f"{root}/v0001", f"{root}/v0002"]


def test_error_mode_lets_only_one_of_two_writers_in(s3):
    root = s3.bucket("exclusive") + "/ds"
    pending = commit.begin(root, "error")
    with pytest.raises(commit.OutputExistsError):
        commit.begin(root, "error")
    _write(pending, "only")
    assert open_version(root)[1].source == "only"
    with pytest.raises(commit.OutputExistsError, match="already exists"):
        commit.begin(root, "error")


def test_overwrite_switches_at_the_manifest_and_keeps_the_old_data_until_then(s3):
    root = s3.bucket("swap") + "/ds"
    _write(commit.begin(root, "error"), "old")
    pending = commit.begin(root, "overwrite")
    storage.write_text(storage.join(pending.data_uri, "train", "part-0.parquet"), "new")
    url, manifest = open_version(root)
    assert manifest.source == "old" and storage.read_text(f"{url}/train/part-0.parquet") == "old"
    pending.finish(_manifest("new"))
    url, manifest = open_version(root)
    assert manifest.source == "new" and url == pending.data_uri
    assert storage.read_text(f"{url}/train/part-0.parquet") == "new"
    assert not any(k.startswith("ds/train/") for k in s3.keys("swap"))  # old data removed
    again = commit.begin(root, "overwrite")
    _write(again, "newer")
    assert open_version(root)[1].source == "newer"
    assert not storage.exists(pending.data_uri) and commit.garbage(root) == []


def test_an_overwrite_that_dies_leaves_the_old_version_and_listed_garbage(s3):
    root = s3.bucket("dies") + "/ds"
    _write(commit.begin(root, "error"), "old")
    pending = commit.begin(root, "overwrite")
    storage.write_text(storage.join(pending.data_uri, MANIFEST_NAME), _manifest("new"))
    assert open_version(root)[1].source == "old"  # the inner manifest does not commit it
    assert [g.uri for g in commit.garbage(root)] == [pending.data_uri]


def test_a_table_output_is_marked_last_and_not_replaced_in_place(s3):
    root = s3.bucket("tables") + "/predictions"
    pending = commit.begin_table(root, "error")
    storage.write_text(f"{pending.data_uri}/part-0.parquet", "rows")
    assert not storage.exists(f"{root}/{commit.SUCCESS_NAME}")
    pending.finish("{}")
    objects = [k for k in s3.keys("tables") if not k.endswith("/")]  # not pyarrow's folder marks
    assert objects == ["predictions/_SUCCESS", "predictions/part-0.parquet"]
    with pytest.raises(commit.ObjectStoreOverwriteError, match="write to a new output"):
        commit.begin_table(root, "overwrite")


# A writer process that dies (os._exit, as a SIGKILL would leave it) just before its Nth call
# that changes the store: every step of the commit protocol, one process per step.
DYING_WRITER = """
import os, sys
from pipeline import storage
from pipeline.datasets import commit
from tests.integration.test_object_store import _manifest
kill_at, root, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
calls = 0
def dying(call):
    def wrapper(*args, **kwargs):
        global calls
        calls += 1
        if calls == kill_at:
            os._exit(9)
        return call(*args, **kwargs)
    return wrapper
for name in ("write_text", "write_new", "delete_file", "delete_dir"):
    setattr(storage, name, dying(getattr(storage, name)))
pending = commit.begin(root, mode)
storage.write_text(storage.join(pending.data_uri, "train", "part-0.parquet"), "new")
pending.finish(_manifest("new"))
"""


def _committed_states(root: str) -> list[str]:
    """What readers accept under ``root``: each version's manifest source, checked against its
    data (a version whose data does not match its manifest would be half-written)."""
    from pipeline.datasets.manifest import committed_versions

    urls = [storage.join(root, n) for n in committed_versions(root)] or [root]
    states = []
    for url in urls:
        data_url, manifest = open_version(url)
        assert storage.read_text(f"{data_url}/train/part-0.parquet") == manifest.source
        states.append(manifest.source)
    return states


@pytest.mark.parametrize("mode", ["overwrite", "new-version"])
def test_a_writer_killed_at_each_step_leaves_the_old_state_or_the_new(s3, mode, tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    root = s3.bucket(f"killed-{mode}") + "/ds"
    _write(commit.begin(root, "error" if mode == "overwrite" else mode), "old")
    for kill_at in range(1, 30):
        died = subprocess.run([sys.executable, "-c", DYING_WRITER, str(kill_at), root, mode],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
        states = _committed_states(root)
        if died.returncode == 0:
            break
        assert died.returncode == 9, died.stderr[-2000:]
        if mode == "overwrite":
            assert states in (["old"], ["new"]), (kill_at, states)
        else:  # the old version stays; a new one is there whole or not at all
            assert states[0] == "old" and set(states[1:]) <= {"new"}, (kill_at, states)
    assert kill_at > 3, "the writer must have died at several steps before completing"
    assert states[-1] == "new"
    commit.delete_garbage(commit.garbage(root), older_than_s=0)
    assert _committed_states(root) == states and commit.garbage(root) == []
