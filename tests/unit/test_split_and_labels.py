"""Split assignment and labels: pure, deterministic functions."""

import hashlib

import pytest

from pipeline.ingest.labels import build_label_map, label_from_path
from pipeline.ingest.rejection import Rejected
from pipeline.ingest.split import assign_split


def _hashes(n: int) -> list[str]:
    return [hashlib.sha256(str(i).encode()).hexdigest() for i in range(n)]


def test_split_is_deterministic_and_follows_the_ratios():
    ratios = {"train": 0.7, "val": 0.2, "test": 0.1}
    first = [assign_split(h, ratios) for h in _hashes(20000)]
    assert first == [assign_split(h, ratios) for h in _hashes(20000)]
    for name, share in ratios.items():
        assert abs(first.count(name) / len(first) - share) < 0.015


def test_zero_ratio_splits_get_nothing():
    assert {assign_split(h, {"train": 0.8, "val": 0.2, "test": 0.0}) for h in _hashes(2000)} == {
        "train", "val"}
    assert {assign_split(h, {"train": 1.0}) for h in _hashes(100)} == {"train"}


def test_split_of_an_item_does_not_depend_on_the_others():
    ratios = {"train": 0.8, "val": 0.2}
    hashes = _hashes(500)
    alone = {h: assign_split(h, ratios) for h in hashes[:100]}
    assert alone == {h: assign_split(h, ratios) for h in hashes[:100]}


def test_label_from_path():
    root = "file:/data/raw/digits"
    assert label_from_path(f"{root}/3/x.png", root) == "3"
    assert label_from_path(f"{root}/cat dog/ü x.png", root + "/") == "cat dog"
    for path in (f"{root}/x.png", f"{root}/3/sub/x.png", "file:/elsewhere/3/x.png"):
        with pytest.raises(Rejected):
            label_from_path(path, root)


def test_label_map_is_sorted_and_stable():
    assert build_label_map({"b", "a", "c"}) == {"a": 0, "b": 1, "c": 2}
