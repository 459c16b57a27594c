"""Reading raw inputs without Hadoop: partition planning, local listing, the size cap, JSONL
and CSV ranges with exact line numbers and Parquet row groups (plain Python, no Spark)."""

from __future__ import annotations

import codecs
import json
import random

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import load_config
from pipeline.datasets.reasons import Reason
from pipeline.ingest.discover import classify_data_file, classify_folder_file, size_problem
from pipeline.ingest.text_records import TextRecord, file_rows
from pipeline.ingest.text_splits import (
    line_start,
    nominal_ranges,
    plan_ranges,
    read_footer,
    read_range,
    read_row_group,
    scan_file_range,
    spark_file_path,
)
from pipeline.spark import listing
from pipeline.spark.files import partitions_for, plan_partitions, read_one

TEXT = load_config().text


# --- partition planning ---------------------------------------------------------------------

def test_partitions_are_sorted_runs_covering_every_file_once():
    rng = random.Random(7)
    wanted = {f"file:/raw/{rng.randrange(10**6):06d}.png": rng.randrange(0, 5000)
              for _ in range(1000)}
    plan = plan_partitions(wanted, 8)
    assert 1 <= len(plan) <= 8 and all(plan)
    flat = [item for run in plan for item in run]
    assert flat == sorted(wanted.items())  # every file once, in path order
    shuffled = dict(sorted(wanted.items(), key=lambda _: rng.random()))
    assert plan_partitions(shuffled, 8) == plan  # the same listing gives the same tasks


def test_small_files_are_balanced_by_count_and_large_ones_by_bytes():
    small = {f"s3://b/{i:05d}": 100 for i in range(1000)}
    counts = [len(run) for run in plan_partitions(small, 4)]
    assert counts == [250, 250, 250, 250]
    # one 400 MB file and 300 small ones: the big file gets a task to itself
    mixed = {"s3://b/a-big": 400 << 20, **{f"s3://b/s{i:03d}": 1000 for i in range(300)}}
    plan = plan_partitions(mixed, 4)
    assert plan[0] == [("s3://b/a-big", 400 << 20)]
    assert sum(len(run) for run in plan[1:]) == 300
    sizes = [sum(max(size, 0) + (1 << 20) for _, size in run) for run in plan[1:]]
    assert max(sizes) - min(sizes) <= 2 << 20


def test_plans_never_hold_empty_partitions():
    assert plan_partitions({"a": 1, "b": -1}, 10) == [[("a", 1)], [("b", -1)]]
    assert plan_partitions({"a": 1}, 1) == [[("a", 1)]]
    assert partitions_for(2, [10] * 5) == 4
    assert partitions_for(1, [1] * 5000) == 3
    assert partitions_for(1, [64 << 20]) == 4


def test_a_failed_read_is_its_files_outcome(tmp_path):
    (tmp_path / "ok.bin").write_bytes(b"abc")
    assert read_one(f"file:{tmp_path}/ok.bin") == (b"abc", None)
    content, error = read_one(f"file:{tmp_path}/gone.bin")
    assert content is None and error.startswith("cannot be read: ") and "\n" not in error


# --- local listing (no py4j) ----------------------------------------------------------------

def test_local_listing_keeps_hadoops_spelling_and_odd_names(tmp_path):
    (tmp_path / "raw" / "cat").mkdir(parents=True)
    (tmp_path / "raw" / "dog").mkdir()
    (tmp_path / "raw" / "empty" / "deeper").mkdir(parents=True)
    (tmp_path / "raw" / "cat" / "my cat é.png").write_bytes(b"12345")
    (tmp_path / "raw" / "cat" / "gone.png").symlink_to(tmp_path / "raw" / "never.png")
    (tmp_path / "raw" / "dog" / "a.png").write_bytes(b"")
    root, files = listing.list_tree(None, (tmp_path / "raw").as_uri())
    assert root == f"file:{tmp_path}/raw"
    assert files == [(f"file:{tmp_path}/raw/cat/gone.png", -1),
                     (f"file:{tmp_path}/raw/cat/my cat é.png", 5),
                     (f"file:{tmp_path}/raw/dog/a.png", 0)]
    assert read_one(files[1][0]) == (b"12345", None)  # the storage layer reads that spelling
    assert listing.empty_folders(None, root) == ["empty"]
    assert listing.locate(None, [f"file:{tmp_path}/raw/dog/a.png",
                                 f"file:{tmp_path}/raw/dog/b.png"]) == {
        f"file:{tmp_path}/raw/dog/a.png": (f"file:{tmp_path}/raw/dog/a.png", 0)}
    single = listing.list_tree(None, files[1][0], allow_file=True)
    assert single == (f"file:{tmp_path}/raw/cat", [files[1]])


def test_schemes_are_routed_to_the_storage_layer_or_hadoop():
    assert listing.through_storage("file:/x") and listing.through_storage("/x")
    assert listing.through_storage("s3://bucket/x") and listing.through_storage("s3a://b/x")
    assert not listing.through_storage("gs://bucket/x")
    assert not listing.through_storage("abfs://c@account.dfs.core.windows.net/x")


# --- the size cap ---------------------------------------------------------------------------

def test_files_over_the_cap_are_judged_from_their_listed_size():
    assert size_problem(10, 10) is None and size_problem(-1, 10) is None
    assert size_problem(0, 10)[0] == Reason.EMPTY_FILE
    reason, detail = size_problem(11, 10)
    assert reason == Reason.TOO_LARGE and "listed size 11 bytes" in detail
    found = classify_folder_file("file:/r/cat/big.png", 11, "file:/r", max_bytes=10)
    assert (found.reason, found.label) == (Reason.TOO_LARGE, "cat")
    assert classify_folder_file("file:/r/.big.png", 11, "file:/r", max_bytes=10).reason == \
        Reason.HIDDEN_FILE  # where a file lies is judged first
    assert classify_data_file("file:/r/a.csv", 11, "file:/r", max_bytes=10).reason == \
        Reason.TOO_LARGE
    assert classify_data_file("file:/r/a.csv", 10, "file:/r", max_bytes=10).reason is None
    # tables are accounted for like folder files: where they lie first, never read if outside
    assert classify_data_file("file:/r/a.csv", 10, "file:/r", True).reason == \
        Reason.SYMLINK_OUTSIDE_ROOT
    assert classify_data_file("file:/r/a.csv._COPYING_", 10, "file:/r").reason == \
        Reason.HIDDEN_FILE  # an HDFS upload in progress, which Spark skips


# --- JSONL ranges ---------------------------------------------------------------------------

def _jsonl_corpus(rng: random.Random, lines: int) -> bytes:
    parts = []
    for number in range(lines):
        kind = rng.randrange(8)
        if kind == 0:
            parts.append("")  # a blank line still counts
        elif kind == 1:
            parts.append('{"text": "cut off')
        elif kind == 2:
            parts.append(json.dumps({"text": "x" * rng.randrange(0, 300), "label": "a"}) + "\r")
        elif kind == 3:
            parts.append(json.dumps({"text": f"line {number} é 🎬 \u2028 ok", "label": 1},
                                    ensure_ascii=False))
        else:
            parts.append(json.dumps({"text": f"row {number}\x00 here", "label": "b"}))
    return "\n".join(parts).encode() + (b"\n" if rng.random() < 0.5 else b"")


def _ranged(tmp_path, data: bytes, split: int, fmt: str = "jsonl"):
    path = tmp_path / f"big.{fmt}"
    path.write_bytes(data)
    uri = f"file:{path}"
    scans = [scan_file_range(uri, len(data), start, end, fmt)
             for start, end in nominal_ranges(len(data), split)]
    random.Random(1).shuffle(scans)  # Spark returns them in any order
    return uri, plan_ranges(scans, ("text", "label"))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("split", [1, 7, 64, 4096])
def test_jsonl_ranges_give_exactly_the_rows_of_the_whole_file(tmp_path, seed, split):
    rng = random.Random(seed)
    data = _jsonl_corpus(rng, 60)
    if seed % 2:
        data = codecs.BOM_UTF8 + data
    uri, plan = _ranged(tmp_path, data, split)
    assert plan.whole == [] and plan.records == []
    assert [r.start for r in plan.ranges] == sorted(r.start for r in plan.ranges)
    assert plan.ranges[0].start == 0 and plan.ranges[-1].end == len(data)
    for before, after in zip(plan.ranges, plan.ranges[1:], strict=False):
        assert before.end == after.start and data[after.start - 1:after.start] == b"\n"
    got = [item for piece in plan.ranges for item in read_range(piece, "text", "label")]
    assert _rows_and_blank_lines(got) == _rows_and_blank_lines(
        file_rows(uri, data, "jsonl", "text", "label", TEXT))


def _rows_and_blank_lines(items) -> tuple[list, int]:
    """(the rows and records, the blank lines the tallies count): ranges tally their own."""
    items = list(items)
    tallies = [i for i in items if isinstance(i, TextRecord) and i.blank_lines]
    return [i for i in items if i not in tallies], sum(t.blank_lines for t in tallies)


def test_a_second_byte_order_mark_is_text_as_when_read_whole(tmp_path):
    data = codecs.BOM_UTF8 * 2 + b'{"text": "first", "label": "a"}\n' * 9
    uri, plan = _ranged(tmp_path, data, 16)
    got = [item for piece in plan.ranges for item in read_range(piece, "text", "label")]
    assert got == list(file_rows(uri, data, "jsonl", "text", "label", TEXT))


def test_a_line_longer_than_many_ranges_stays_whole(tmp_path):
    long = json.dumps({"text": "word " * 500, "label": "a"})
    data = f'{{"text": "first", "label": "a"}}\n{long}\n\n{{"text": "last"}}'.encode()
    uri, plan = _ranged(tmp_path, data, 16)
    got = _rows_and_blank_lines(item for piece in plan.ranges
                                for item in read_range(piece, "text", "label"))
    assert ([item.line for item in got[0]], got[1]) == ([1, 2, 4], 1)  # line 3 is blank
    assert got == _rows_and_blank_lines(file_rows(uri, data, "jsonl", "text", "label", TEXT))


def test_files_that_are_not_all_utf8_are_read_whole(tmp_path):
    data = b'{"text": "fine", "label": "a"}\n' * 20 + b'{"text": "caf\xe9", "label": "a"}\n'
    uri, plan = _ranged(tmp_path, data, 64)
    assert plan.whole == [uri] and plan.ranges == [] and plan.records == []
    utf16 = codecs.BOM_UTF16_LE + '{"text": "x", "label": "a"}\n'.encode("utf-16-le") * 9
    uri, plan = _ranged(tmp_path, utf16, 64)
    assert plan.whole == [uri]


def test_a_file_of_whitespace_is_one_empty_text_record_as_when_read_whole(tmp_path):
    data = codecs.BOM_UTF8 + b" \n\t\n\x00\r\n" * 40
    uri, plan = _ranged(tmp_path, data, 16)
    assert plan.ranges == [] and plan.whole == []
    assert plan.records == list(file_rows(uri, data, "jsonl", "text", "label", TEXT))


@pytest.mark.parametrize("data", [
    bytes(random.Random(3).choices(b"\x01\x02\x03\x1b\x7f{}abc\n\" ", k=3000)),
    b"%PDF-1.4\n" + b'{"text": "a pdf that is all ASCII", "label": "a"}\n' * 40,
], ids=["controls", "pdf-signature"])
def test_binary_content_in_ranges_is_judged_as_when_read_whole(tmp_path, data):
    """UTF-8 all through, so read in ranges: the ranges' counts add up to the whole file's."""
    uri, plan = _ranged(tmp_path, data, 64)
    assert plan.ranges == [] and plan.whole == []
    whole = list(file_rows(uri, data, "jsonl", "text", "label", TEXT))
    assert [r.reason for r in whole] == [Reason.BINARY_CONTENT]
    assert plan.records == whole


def test_controls_spread_over_ranges_of_text_count_for_the_whole_file(tmp_path):
    row = b'{"text": "plain", "label": "a"}\n'
    data = row * 30 + b"\x01" * 10 + b"\n" + row * 30  # 10 of ~1900 characters: text
    _, plan = _ranged(tmp_path, data, 64)
    assert plan.records == [] and len(plan.ranges) > 1


def test_a_file_gone_before_the_first_pass_is_unreadable(tmp_path):
    scans = [scan_file_range(f"file:{tmp_path}/gone.jsonl", 100, 0, 50)]
    plan = plan_ranges(scans)
    assert [(r.reason, r.line) for r in plan.records] == [(Reason.UNREADABLE, None)]


def test_line_starts_and_nominal_ranges():
    data = b"ab\ncd\n\nef"

    def read_at(offset: int, length: int) -> bytes:
        return data[offset:offset + length]

    assert [line_start(read_at, pos, len(data), chunk=2) for pos in range(len(data) + 1)] == [
        0, 3, 3, 3, 6, 6, 6, 7, 9, 9]
    assert nominal_ranges(10, 3) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert nominal_ranges(10, 10) == [(0, 10)]
    assert nominal_ranges(130, 64) == [(0, 44), (44, 88), (88, 130)]


# --- CSV ranges -----------------------------------------------------------------------------

def _csv_read(tmp_path, data: bytes, split: int):
    """(the plan, its items as the job reads them, the items of the file read whole)."""
    uri, plan = _ranged(tmp_path, data, split, "csv")
    whole = list(file_rows(uri, data, "csv", "text", "label", TEXT))
    got = list(plan.records)
    got += [item for piece in plan.ranges for item in read_range(piece, "text", "label")]
    if plan.whole:
        assert plan.whole == [uri]
        got += whole
    if plan.ranges:  # contiguous, each starting at a line start
        assert plan.ranges[0].start == 0 and plan.ranges[-1].end == len(data)
        for before, after in zip(plan.ranges, plan.ranges[1:], strict=False):
            assert before.end == after.start and data[after.start - 1:after.start] == b"\n"
    return plan, got, whole


CSV_CASES = {
    "quoted": (b'text,label\r\n"a, b\nand ""c""\r\nd",pos\r\nplain,neg\r\n'
               b'"x"",""y",neg\r\n"two\n\nblank lines inside",pos\r\n'),
    "odd-rows": (b"text,label\n\n\nshort\nlong,row,here\n,\n\n\"\",\"\"\nlast,row"),
    "lone-cr": b"text,label\rone,pos\r\rtwo,neg\r\n\"three\rlines\n\r\",x\r" * 4,
    "bom": codecs.BOM_UTF8 + b'text,label\r\n"\xc3\xa9t\xc3\xa9\n\xf0\x9f\x8e\xac",pos\r\n' * 9,
    "two-boms": codecs.BOM_UTF8 * 2 + b"text,label\nfine,pos\n" * 9,
    # quotes the reader takes as plain characters: inside an unquoted field, after a closing
    # quote; the parity of the quotes before a cut would put the cuts in the wrong places
    "stray-quotes": (b'text,label\nx,a","y\nz",pos\nab"c,"d\ne"f"\n"g"h,i"j\n'
                     b'"k"l"m,"n\n"o\n') * 3,
    "nuls": b'text,label\r\x00\n"a\x00"\x00",b"\r\x00\nc,d\n' * 5,
    "reordered": b'label,extra,text\npos,1,"one\ntwo"\nneg,2,three\n' * 6,
    "header-only": b"text,label\r\n",
    "header-no-newline": b"text,label",
    "header-then-blank-lines": b"text,label\n\n\r\n\n",
    "quoted-header": b'"te\nxt","la\r\nbel",text,label\n1,2,3,4\n' * 4,
    "unterminated": b'text,label\nok,pos\n"never closed,\nstill,\nopen\n',
}


NO_ROWS = ("header-only", "header-no-newline", "header-then-blank-lines")


@pytest.mark.parametrize("split", [1, 2, 3, 5, 8, 13, 40, 4096])
@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_csv_ranges_give_exactly_the_rows_of_the_whole_file(tmp_path, case, split):
    data = CSV_CASES[case]
    plan, got, whole = _csv_read(tmp_path, data, split)
    assert got == whole
    # a header and no row: one no_rows record for the file, decided by the first pass
    assert plan.records == ([] if case not in NO_ROWS else whole)
    assert [item.reason for item in whole if case in NO_ROWS] == [Reason.NO_ROWS] * (
        case in NO_ROWS)
    # UTF-8 with a header: read in ranges, unless the header does not end in the first one
    assert plan.whole == [] or (case == "quoted-header" and split < 16)


def test_a_quoted_newline_at_a_cut_merges_the_ranges(tmp_path):
    head = b'text,label\n"first line of a field\n'
    data = head + b'the rest of it, after the cut",pos\nnext,neg\n' + b'"again\nquoted",neg\n' * 2
    uri, plan = _ranged(tmp_path, data, len(head) - 1, "csv")  # a cut just before the newline
    starts = [piece.start for piece in plan.ranges]
    assert len(head) not in starts  # inside the quoted field: no record starts there
    assert [(p.first_line, p.header) for p in plan.ranges[:2]] == [(1, None),
                                                                   (4, ("text", "label"))]
    got = [item for piece in plan.ranges for item in read_range(piece, "text", "label")]
    assert [item.line for item in got] == [2, 4, 5, 7]
    assert got == list(file_rows(uri, data, "csv", "text", "label", TEXT))


def test_a_csv_header_without_the_columns_is_one_record_as_when_read_whole(tmp_path):
    data = b"review,stars\n" + b"good,5\n" * 40
    plan, got, whole = _csv_read(tmp_path, data, 16)
    assert plan.ranges == [] and plan.whole == []
    assert [(r.reason, r.line) for r in got] == [(Reason.BAD_HEADER, 1)]
    assert got == whole
    blank = b"\ntext,label\n" + b"good,pos\n" * 40  # the first record is the blank line
    assert _csv_read(tmp_path, blank, 16)[1] == list(file_rows(
        f"file:{tmp_path}/big.csv", blank, "csv", "text", "label", TEXT))


def test_csv_files_ranges_cannot_read_exactly_are_read_whole(tmp_path):
    latin1 = b"text,label\n" + b"caf\xe9,pos\n" * 20
    assert _csv_read(tmp_path, latin1, 16)[0].whole  # not UTF-8
    long_header = b'"text\n' + b"x" * 60 + b'\n",label\n' + b"a,b\n" * 20
    plan, got, whole = _csv_read(tmp_path, long_header, 16)
    assert plan.whole and got == whole  # the header does not end in the first range


def _csv_text(chunks: list[str]) -> bytes:
    return ("text,label\r\n" + "".join(chunks)).encode()


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(st.sampled_from(['a', 'é', ',', '"', '""', '\n', '\r', '\r\n', ' ',
                                        '\x00', '",', ',"', '"\n']), max_size=60),
       split=st.integers(1, 70))
def test_any_csv_text_reads_in_ranges_as_whole(tmp_path, chunks, split):
    plan, got, whole = _csv_read(tmp_path, _csv_text(chunks), split)
    assert plan.whole == []
    assert got == whole


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(st.text(alphabet='ab ,"\n\r\té', max_size=8), min_size=0,
                              max_size=4), max_size=25),
       terminator=st.sampled_from(["\n", "\r\n"]), split=st.integers(1, 90))
def test_written_csv_reads_in_ranges_as_whole(tmp_path, rows, terminator, split):
    import csv
    import io

    out = io.StringIO(newline="")
    csv.writer(out, lineterminator=terminator).writerows([["text", "label"], *rows])
    plan, got, whole = _csv_read(tmp_path, out.getvalue().encode(), split)
    assert plan.whole == [] and got == whole


# --- Parquet row groups ---------------------------------------------------------------------

def test_parquet_rows_are_read_per_row_group_with_spark_names(tmp_path):
    frame = pd.DataFrame({"review": [f"text {i}" for i in range(10)],
                          "label": ["a", None] * 5})
    folder = tmp_path / "in dir"
    folder.mkdir()
    path = folder / "part 0.parquet"
    pq.write_table(pa.Table.from_pandas(frame), path, row_group_size=4)
    uri = f"file:{path}"
    footer = read_footer(uri)
    assert [(g.index, g.first_line, g.rows) for g in footer.groups] == [(0, 1, 4), (1, 5, 4),
                                                                        (2, 9, 2)]
    assert {"review", "label"} <= set(footer.columns)
    rows = [row for group in footer.groups for row in read_row_group(group, "review", "label")]
    assert [tuple(row) for row in rows] == [
        (f"file:{tmp_path}/in%20dir/part%200.parquet", i + 1, f"text {i}", frame.label[i])
        for i in range(10)]
    missing = list(read_row_group(footer.groups[2], "review", "stars"))
    assert [row.label for row in missing] == [None, None]  # an absent column reads as null
    path.write_bytes(b"no longer parquet")
    broken = list(read_row_group(footer.groups[1], "review", "label"))
    assert [(r.line, r.reason) for r in broken] == [(line, Reason.UNREADABLE)
                                                    for line in range(5, 9)]
    assert all(isinstance(r, TextRecord) for r in broken)


def test_spark_file_paths_quote_as_java_uris_do():
    assert spark_file_path("file:/tmp/p.parquet") == "file:/tmp/p.parquet"
    assert spark_file_path("file:/tmp/p é.parquet") == "file:/tmp/p%20é.parquet"
    assert spark_file_path("file:/a/100%#x.parquet") == "file:/a/100%25%23x.parquet"
    assert spark_file_path("s3a://bucket/a b/c.parquet") == "s3a://bucket/a%20b/c.parquet"
    assert spark_file_path("s3://bucket") == "s3://bucket"


def test_retrain_accepts_a_new_size_cap_but_not_new_rules():
    """``ingest.*`` is not recorded in a version's configuration: a retrain may change it."""
    from types import SimpleNamespace

    from pipeline.config import ConfigError
    from pipeline.retrain.workflow import _check_same_rules

    built = load_config().to_dict()
    manifest = SimpleNamespace(kind="images", config={key: built[key] for key in
                                                      ("images", "split", "dataset")})
    _check_same_rules(load_config(overrides=["ingest.max_file_bytes=1000"]), manifest, "v0001")
    with pytest.raises(ConfigError, match=r"images\.height"):
        _check_same_rules(load_config(overrides=["images.height=32"]), manifest, "v0001")
