"""Discovery and duplicate decisions: pure functions over paths and listing text."""

from __future__ import annotations

import json

import pytest

from pipeline.ingest.dedup import DuplicateGroup, duplicate_decisions
from pipeline.ingest.discover import (
    classify_folder_file,
    is_hidden,
    listing_format,
    parse_listing,
    resolve_path,
)
from pipeline.ingest.rejection import Rejected

ROOT = "file:/data/raw"


@pytest.mark.parametrize(("path", "size", "escapes", "reason", "label"), [
    (f"{ROOT}/cat/a.png", 10, False, None, "cat"),
    (f"{ROOT}/cat/a.png", 0, False, "empty_file", "cat"),
    (f"{ROOT}/cat/.a.png", 10, False, "hidden_file", None),
    (f"{ROOT}/_tmp/a.png", 10, False, "hidden_file", None),
    (f"{ROOT}/a.png", 10, False, "no_label", None),
    (f"{ROOT}/cat/sub/a.png", 10, False, "no_label", None),
    (f"{ROOT}/cat/link.png", 10, True, "symlink_outside_root", None),
])
def test_classify_folder_file(path, size, escapes, reason, label):
    found = classify_folder_file(path, size, ROOT, escapes)
    assert (found.reason, found.label) == (reason, label)
    assert found.path == path
    assert (found.detail is None) == (reason is None)


def test_hidden_is_judged_below_the_root_only():
    assert not is_hidden("file:/home/.cache/raw/cat/a.png", "file:/home/.cache/raw")
    assert is_hidden("file:/home/raw/.git/x", "file:/home/raw")


def test_listing_paths_resolve_against_the_listing_folder():
    base = "file:/data/lists"
    assert resolve_path("img/a.png", base) == "file:/data/lists/img/a.png"
    assert resolve_path("../img/a.png", base) == "file:/data/img/a.png"
    assert resolve_path("/abs/a.png", base) == "file:/abs/a.png"
    assert resolve_path("hdfs://nn:8020/x.png", base) == "hdfs://nn:8020/x.png"


def test_listing_format_by_extension():
    assert listing_format("file:/x/list.CSV") == "csv"
    assert listing_format("s3a://b/list.jsonl") == "jsonl"
    with pytest.raises(Rejected):
        listing_format("file:/x/list.txt")


def test_csv_listing_accounts_for_every_row():
    text = ('path,label\n"a b.png",cat\nb.png,\n"c,1.png",dog\n'
            'a b.png,cat\n,dog\nd.png,cat,extra\n')
    found = parse_listing(text, "csv", "file:/l/list.csv")
    outcome = [(f.path, f.label, f.reason) for f in found]
    assert outcome == [
        ("file:/l/a b.png", "cat", None),
        ("file:/l/b.png", None, "no_label"),
        ("file:/l/c,1.png", "dog", None),
        ("file:/l/a b.png (file:/l/list.csv:5)", None, "duplicate_entry"),
        ("file:/l/list.csv:6", None, "bad_listing_row"),
        ("file:/l/list.csv:7", None, "bad_listing_row"),
    ]


def test_csv_without_the_columns_is_refused():
    with pytest.raises(Rejected, match="lacks label"):
        parse_listing("path,class\na.png,cat\n", "csv", "file:/l/list.csv")


def test_jsonl_listing_names_the_bad_lines():
    lines = [json.dumps({"path": "a.png", "label": "cat"}), "", "{oops", "[1]",
             json.dumps({"path": 3, "label": "cat"}), json.dumps({"path": "b.png", "label": 7})]
    found = parse_listing("\n".join(lines), "jsonl", "file:/l/list.jsonl")
    assert [(f.reason, f.label) for f in found] == [
        (None, "cat"), ("bad_listing_row", None), ("bad_listing_row", None),
        ("bad_listing_row", None), (None, "7")]
    assert "line 3: invalid JSON" in found[1].detail
    assert "not an object" in found[2].detail


def test_duplicates_same_label_keep_the_first_path():
    decisions = duplicate_decisions([DuplicateGroup([("p/b", "cat"), ("p/a", "cat"),
                                                     ("p/c", "cat")])])
    assert decisions == {"p/b": ("duplicate", "duplicate of p/a"),
                         "p/c": ("duplicate", "duplicate of p/a")}


def test_duplicates_across_labels_are_all_conflicting():
    decisions = duplicate_decisions([DuplicateGroup([("p/a", "cat"), ("p/b", "dog")])])
    assert set(decisions) == {"p/a", "p/b"}
    assert all(reason == "conflicting_labels" for reason, _ in decisions.values())
    assert "cat, dog" in decisions["p/a"][1] and "p/b" in decisions["p/a"][1]


def test_listing_survives_bom_huge_numbers_and_deep_nesting():
    found = parse_listing('\ufeffpath,label\na.png,cat\n', "csv", "file:/l/list.csv")
    assert [(f.path, f.label) for f in found] == [("file:/l/a.png", "cat")]
    lines = ['{"path": "a.png", "label": ' + "1" * 5000 + "}", "[" * 100000,
             json.dumps({"path": "b.png", "label": "dog"})]
    found = parse_listing("\n".join(lines), "jsonl", "file:/l/list.jsonl")
    assert [f.reason for f in found] == ["bad_listing_row", "bad_listing_row", None]


def test_one_file_spelled_two_ways_is_one_entry():
    found = parse_listing("path,label\nfile:///d/a.png,cat\n/d/a.png,cat\n", "csv",
                          "file:/l/list.csv")
    assert (found[0].path, found[0].reason) == ("file:/d/a.png", None)
    assert found[1].reason == "duplicate_entry"


def test_local_uris_in_hadoop_spelling():
    from pipeline.storage import to_uri

    assert to_uri("file:/data/raw") == "file:///data/raw"


def test_listing_rows_follow_the_shared_row_rules():
    """Blank lines are no rows and shift no line numbers; a short row lacks its label; a long
    one is bad, with the same wording as a malformed text row."""
    text = "path,label\n\na.png,cat\nb.png\n\nc.png,dog,extra\n"
    found = parse_listing(text, "csv", "file:/l/list.csv")
    assert [(f.path, f.reason, f.detail) for f in found] == [
        ("file:/l/a.png", None, None),
        ("file:/l/b.png", "no_label", "line 4: the label is empty"),
        ("file:/l/list.csv:6", "bad_listing_row", "line 6: 3 fields, the header has 2"),
    ]


def test_an_empty_csv_listing_is_refused():
    with pytest.raises(Rejected, match="lacks label, path"):
        parse_listing("", "csv", "file:/l/list.csv")
