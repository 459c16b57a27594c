"""Raw-input snapshots: what counts as new, changed or removed (local files, no Spark)."""

from __future__ import annotations

import os

import pytest

from pipeline.errors import InputError
from pipeline.retrain import inputs


def _tree(root, files: dict[str, bytes]):
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def test_first_snapshot_counts_every_file_as_new(tmp_path):
    _tree(tmp_path, {"a/1.png": b"one", "b/2.png": b"two", "b/deep/3.png": b"three"})
    snapshot = inputs.take_snapshot(str(tmp_path))
    assert sorted(snapshot) == ["a/1.png", "b/2.png", "b/deep/3.png"]
    assert snapshot["a/1.png"].size == 3
    assert len(snapshot["a/1.png"].sha256) == 64
    changes = inputs.compare(None, snapshot)
    assert (len(changes.new), changes.changed, changes.removed) == (3, [], [])
    assert changes.any


def test_touched_file_is_not_new_but_changed_content_is(tmp_path):
    _tree(tmp_path, {"a/1.png": b"one", "a/2.png": b"two", "a/3.png": b"three"})
    before = inputs.take_snapshot(str(tmp_path))
    stamp = before["a/1.png"].mtime_ns + 5_000_000_000
    os.utime(tmp_path / "a/1.png", ns=(stamp, stamp))  # same bytes, new time
    (tmp_path / "a/2.png").write_bytes(b"TWO")  # same size, new bytes
    (tmp_path / "a/3.png").unlink()
    _tree(tmp_path, {"c/4.png": b"four"})
    after = inputs.take_snapshot(str(tmp_path), before)
    changes = inputs.compare(before, after)
    assert changes.new == ["c/4.png"]
    assert changes.changed == ["a/2.png"]
    assert changes.removed == ["a/3.png"]
    assert after["a/1.png"].mtime_ns == stamp  # the new time is recorded for the next run
    assert changes.summary() == "1 new, 1 changed, 1 removed"


def test_unchanged_files_are_not_read_again(tmp_path):
    _tree(tmp_path, {"a/1.png": b"one"})
    before = inputs.take_snapshot(str(tmp_path))
    # a recorded hash that does not match the bytes proves the file was not hashed again
    planted = {"a/1.png": inputs.FileState(before["a/1.png"].size, before["a/1.png"].mtime_ns,
                                           "recorded")}
    assert inputs.take_snapshot(str(tmp_path), planted)["a/1.png"].sha256 == "recorded"
    assert not inputs.compare(planted, inputs.take_snapshot(str(tmp_path), planted)).any


def test_json_round_trip_and_missing_input(tmp_path):
    _tree(tmp_path / "raw", {"x/1.txt": b"hello"})
    source = f"file://{tmp_path / 'raw'}"
    snapshot = inputs.take_snapshot(source)
    assert inputs.from_json(inputs.to_json(source, snapshot)) == (source, snapshot)
    with pytest.raises(InputError, match="does not exist"):
        inputs.take_snapshot(str(tmp_path / "nowhere"))


def test_a_single_input_file_is_its_own_snapshot(tmp_path):
    _tree(tmp_path, {"reviews.csv": b"text,label\nfine,pos\n"})
    snapshot = inputs.take_snapshot(str(tmp_path / "reviews.csv"))
    assert list(snapshot) == ["reviews.csv"]


def test_unreadable_file_is_read_again_and_not_new_forever(tmp_path):
    _tree(tmp_path, {"a/1.png": b"one"})
    unreadable = inputs.take_snapshot(str(tmp_path))
    unreadable = {"a/1.png": inputs.FileState(unreadable["a/1.png"].size,
                                              unreadable["a/1.png"].mtime_ns, "")}
    readable_now = inputs.take_snapshot(str(tmp_path), unreadable)
    assert readable_now["a/1.png"].sha256  # hashed again, not the recorded ""
    assert inputs.compare(unreadable, unreadable) == inputs.Changes([], [], [])


def test_damaged_snapshot_names_the_file(tmp_path):
    (tmp_path / "inputs.json").write_text('{"files": 3}')
    with pytest.raises(InputError, match=r"inputs.json is damaged"):
        inputs.read_snapshot(str(tmp_path))


def test_the_stored_source_is_redacted_and_still_names_the_input(tmp_path):
    signed = "https://acct.blob.core.windows.net/c/raw?sv=2024&sig=S3CRET"
    stored, _ = inputs.from_json(inputs.to_json(signed, {}))
    assert "S3CRET" not in stored and stored.endswith("sig=<redacted>")
    assert inputs.same_source(stored, signed)
    assert inputs.same_source(stored, signed.replace("S3CRET", "ROTATED"))  # a new token
    assert inputs.same_source(signed, signed)  # a snapshot stored in clear by an earlier release
    assert not inputs.same_source(stored, signed.replace("/raw?", "/other?"))
