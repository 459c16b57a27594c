"""Text ingest with real Spark: broken and odd documents in every format, and the real
Rotten Tomatoes snippets, with the vocabulary and token ids checked against plain Python."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.datasets.reader import read_batches
from pipeline.ingest import spark_dedup, text_job
from pipeline.ingest.text_job import ingest_text
from pipeline.ingest.text_splits import plan_ranges
from pipeline.ingest.tokens import PAD, RESERVED, parse_vocab, tokenize
from tests.conftest import make_config
from tests.text_corpus import write_text_corpus

TEXT_FIELDS = ("token_ids", "length", "label", "label_name", "text", "source", "line")


def _outcomes(version, root: str) -> tuple[dict[str, str], dict[str, str], list[dict]]:
    """(key -> accepted or reason, key -> detail, accepted rows) of a written version."""
    key = {}
    quarantine = pq.read_table(version / "quarantine").to_pandas()
    got = {row.path.removeprefix(root): row.reason for row in quarantine.itertuples()}
    details = {row.path.removeprefix(root): row.detail for row in quarantine.itertuples()}
    rows = []
    for split in ("train", "val", "test"):
        if not (version / split).exists():
            continue
        for batch in read_batches(version.as_uri(), split, TEXT_FIELDS, 256):
            for i in range(len(batch["source"])):
                row = {name: batch[name][i] for name in TEXT_FIELDS}
                line = row["line"]
                ident = row["source"] if line is None else f"{row['source']}:{line}"
                key[ident.removeprefix(root)] = "accepted"
                rows.append(row)
    assert not set(key) & set(got), "a document is both accepted and quarantined"
    return {**got, **key}, details, rows


@pytest.mark.parametrize("which", ["folders", "reviews.csv", "reviews.jsonl",
                                   "reviews.jsonl in ranges"])
def test_broken_and_odd_text_is_all_accounted_for(spark, tmp_path, monkeypatch, which):
    if which.endswith(" in ranges"):  # the JSONL file cut into ~200-byte ranges, one task each
        monkeypatch.setattr(text_job, "SPLIT_BYTES", 200)
        which = which.removesuffix(" in ranges")
    expected = write_text_corpus(tmp_path / "corpus")
    # a dangling link inside the root: listed, skipped by Spark's reader, so quarantined
    pos = tmp_path / "corpus" / "folders" / "pos"
    (pos / "gone.txt").symlink_to(pos / "never.txt")
    expected["folders/pos/gone.txt"] = "unreadable"
    wanted = {k: v for k, v in expected.items()
              if (k.startswith("folders/") if which == "folders" else k.startswith(which))}
    cfg = make_config(tmp_path)
    manifest = ingest_text(spark, cfg, str(tmp_path / "corpus" / which), str(tmp_path / "out"))
    assert manifest.discovered == len(wanted)
    assert manifest.accounted()
    if which == "reviews.jsonl":  # its rows and its blank lines make its line count
        lines = (tmp_path / "corpus" / which).read_bytes().count(b"\n")
        assert (manifest.discovered, manifest.extra["blank_lines"]) == (lines - 2, 2)
    root = f"file:{tmp_path / 'corpus'}/"
    outcome, details, rows = _outcomes(tmp_path / "out", root)
    assert sorted(outcome) == sorted(wanted)

    groups: dict[str, list[str]] = {}
    for key, want in wanted.items():
        if want.startswith(("duplicate_group:", "near_duplicate_group:")):
            groups.setdefault(want, []).append(key)
        else:
            assert outcome[key] == want, (key, details.get(key))
    for group, members in groups.items():
        kept = [m for m in members if outcome[m] == "accepted"]
        assert len(kept) == 1, (group, {m: outcome[m] for m in members})
        reason = "near_duplicate" if group.startswith("near") else "duplicate"
        for member in set(members) - set(kept):
            assert outcome[member] == reason, member
            assert kept[0] in details[member]
    for row in rows:  # every accepted row decodes, with ids padded to max_len
        assert row["token_ids"].shape == (cfg.text.max_len,)
        assert 0 < row["length"] <= cfg.text.max_len
        assert (row["token_ids"][row["length"]:] == PAD).all()


def test_a_csv_read_in_ranges_is_the_csv_read_whole(spark, tmp_path, monkeypatch):
    """The same rows, lines, rejections and fingerprint, with a cut inside a quoted field."""
    write_text_corpus(tmp_path / "corpus")
    source = tmp_path / "corpus" / "reviews.csv"
    data = source.read_bytes()
    quoted_newline = data.index(b"Spans two lines:\n") + len(b"Spans two lines:")
    row_start = data.rindex(b"\n", 0, quoted_newline) + 1
    split = 60
    assert any(row_start < start <= quoted_newline
               for start, _ in text_job.nominal_ranges(len(data), split))
    cfg = make_config(tmp_path)
    whole = ingest_text(spark, cfg, str(source), str(tmp_path / "whole"))
    plans = []

    def planned(*args):  # the driver's plan, to check that the cut was merged
        plans.append(plan_ranges(*args))
        return plans[-1]

    monkeypatch.setattr(text_job, "SPLIT_BYTES", split)
    monkeypatch.setattr(text_job, "plan_ranges", planned)
    ranged = ingest_text(spark, cfg, str(source), str(tmp_path / "ranged"))
    [plan] = plans
    assert plan.whole == [] and plan.records == [] and len(plan.ranges) > 2
    assert quoted_newline + 1 not in [piece.start for piece in plan.ranges]  # merged
    assert ranged.fingerprint == whole.fingerprint
    assert (ranged.discovered, ranged.quarantine) == (whole.discovered, whole.quarantine)
    root = f"file:{tmp_path / 'corpus'}/"
    assert _outcomes(tmp_path / "ranged", root)[:2] == _outcomes(tmp_path / "whole", root)[:2]


def test_parquet_input_with_bad_values(spark, tmp_path):
    frame = pd.DataFrame({"review": ["A fine and moving film.", None, "Dull, slow, forgettable.",
                                     "Shot with care and wit."],
                          "label": ["fresh", "fresh", "rotten", None]})
    (tmp_path / "in").mkdir()
    frame.to_parquet(tmp_path / "in" / "part-0.parquet")
    manifest = ingest_text(spark, make_config(tmp_path), str(tmp_path / "in"),
                           str(tmp_path / "out"), text_col="review")
    assert manifest.extra["format"] == "parquet"
    assert manifest.discovered == 4 and manifest.accounted()
    assert manifest.quarantine == {"missing_label": 1, "missing_text": 1}
    quarantine = pq.read_table(tmp_path / "out" / "quarantine").to_pandas()
    assert sorted(p.rsplit(":", 1)[1] for p in quarantine["path"]) == ["2", "4"]


def test_parquet_rows_are_named_as_sparks_reader_names_them(spark, tmp_path):
    """Row groups read by the tasks through the storage layer: the same ``source`` and
    ``line`` as Spark's ``_metadata.file_path`` and ``row_index + 1``; the files Spark's reader
    skips or that hold no row are accounted for too."""
    folder = tmp_path / "input"
    folder.mkdir()
    for part in range(2):
        frame = pd.DataFrame({"text": [f"Review {part}-{i} of a film" for i in range(7)],
                              "label": ["fresh", "rotten", None, "plot", "fresh", "", "rotten"]})
        pq.write_table(pa.Table.from_pandas(frame), folder / f"part {part}é.parquet",
                       row_group_size=3)
    spark_rows = spark.read.parquet(f"file://{folder}").select(
        "_metadata.file_path", "_metadata.row_index").collect()
    (folder / "_SUCCESS").write_bytes(b"")
    pq.write_table(pa.table({"text": pa.array([], pa.string()),
                             "label": pa.array([], pa.string())}), folder / "empty.parquet")
    (tmp_path / "elsewhere.parquet").write_bytes((folder / "part 0é.parquet").read_bytes())
    (folder / "linked.parquet").symlink_to(tmp_path / "elsewhere.parquet")
    manifest = ingest_text(spark, make_config(tmp_path), str(folder), str(tmp_path / "out"),
                           fmt="parquet")
    assert manifest.discovered == 17 and manifest.accounted()
    outcome, _, _ = _outcomes(tmp_path / "out", "")
    rows = {key: reason for key, reason in outcome.items() if key.rsplit(":", 1)[-1].isdigit()}
    assert sorted(rows) == sorted(f"{path}:{index + 1}" for path, index in spark_rows)
    assert sorted(reason for reason in rows.values() if reason != "accepted") == [
        "missing_label"] * 4
    files = {key.rsplit("/", 1)[-1]: reason for key, reason in outcome.items() if key not in rows}
    assert files == {"_SUCCESS": "hidden_file", "empty.parquet": "no_rows",
                     "linked.parquet": "symlink_outside_root"}


def test_every_file_of_a_table_folder_is_accounted_for_and_links_out_are_never_read(
        spark, tmp_path):
    folder, secret = tmp_path / "input", "PRIVATE-ROW-4f1c never to be read"
    folder.mkdir()
    (folder / "a.csv").write_text("text,label\nA warm and funny film,fresh\n"
                                  "A cold and dull film,rotten\n")
    (folder / "header_only.csv").write_text("text,label\n")
    for hidden in (".draft.csv", "_tmp.csv", "b.csv._COPYING_"):
        (folder / hidden).write_text("text,label\nA hidden film,fresh\n")
    (tmp_path / "private.csv").write_text(f"text,label\n{secret},fresh\n")
    (folder / "outside.csv").symlink_to(tmp_path / "private.csv")
    manifest = ingest_text(spark, make_config(tmp_path), str(folder), str(tmp_path / "out"),
                           fmt="csv")
    assert manifest.discovered == 7 and manifest.accounted()
    outcome, details, rows = _outcomes(tmp_path / "out", f"file:{folder}/")
    assert outcome == {"a.csv:2": "accepted", "a.csv:3": "accepted",
                       "header_only.csv": "no_rows", ".draft.csv": "hidden_file",
                       "_tmp.csv": "hidden_file", "b.csv._COPYING_": "hidden_file",
                       "outside.csv": "symlink_outside_root"}
    stored = " ".join(str(value) for value in [*details.values(), *(r["text"] for r in rows)])
    assert "PRIVATE-ROW" not in stored


def test_files_over_max_file_bytes_are_quarantined_unread(spark, tmp_path):
    """Judged from the listed size: the big file holds text that would be accepted if read."""
    for name, text in (("pos/a.txt", "A warm and funny film."),
                       ("neg/b.txt", "A cold and dull film."),
                       ("pos/big.txt", "A long and lovely film. " * 100)):
        (tmp_path / "raw" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "raw" / name).write_text(text)
    size = (tmp_path / "raw" / "pos" / "big.txt").stat().st_size
    cfg = make_config(tmp_path, "ingest.max_file_bytes=1000")
    manifest = ingest_text(spark, cfg, str(tmp_path / "raw"), str(tmp_path / "out"))
    assert manifest.discovered == 3 and manifest.quarantine == {"too_large": 1}
    outcome, details, _ = _outcomes(tmp_path / "out", f"file:{tmp_path / 'raw'}/")
    assert outcome["pos/big.txt"] == "too_large"
    assert details["pos/big.txt"] == (f"listed size {size} bytes is over "
                                      "ingest.max_file_bytes (1000); not read")


def test_rotten_tomatoes_vocabulary_and_ids_match_plain_python(reviews_dataset, config):
    from pathlib import Path
    from urllib.parse import urlparse

    url, manifest = reviews_dataset
    version, cfg = Path(urlparse(url).path), config
    assert manifest.discovered == 13905 and manifest.accounted()
    assert set(manifest.label_map) == {"fresh", "rotten", "plot"}
    assert sum(s.rows for s in manifest.splits.values()) > 13000

    # the vocabulary, recomputed from the stored train texts with plain Python
    _, _, rows = _outcomes(version, "")
    train_texts = []
    for batch in read_batches(url, "train", ("text",), 1024):
        train_texts.extend(batch["text"])
    counts = Counter(t for text in train_texts for t in tokenize(text, cfg.text.token_pattern))
    frequent = sorted((t for t, c in counts.items() if c >= cfg.text.min_count),
                      key=lambda t: (-counts[t], t))[: cfg.text.vocab_size]
    vocab = parse_vocab((version / "vocab.txt").read_text(encoding="utf-8"))
    assert list(vocab) == [*RESERVED, *frequent]
    assert manifest.extra["vocab_size"] == len(vocab)

    for row in rows[:: max(1, len(rows) // 500)]:  # token ids, recomputed by hand
        tokens = tokenize(row["text"], cfg.text.token_pattern)[: cfg.text.max_len]
        ids = [vocab.get(t, 1) for t in tokens] + [0] * (cfg.text.max_len - len(tokens))
        np.testing.assert_array_equal(row["token_ids"], np.array(ids, dtype=np.int32))
        assert row["length"] == len(tokens)


def test_documents_that_are_all_quarantined_make_a_version_of_quarantine_alone(spark, config,
                                                                             tmp_path):
    for label in ("pos", "neg"):
        (tmp_path / "raw" / label).mkdir(parents=True)
        (tmp_path / "raw" / label / "empty.txt").write_text("   \n")
    manifest = ingest_text(spark, config, str(tmp_path / "raw"), str(tmp_path / "out"))
    assert (manifest.discovered, manifest.splits, manifest.label_map) == (2, {}, {})
    assert sum(manifest.quarantine.values()) == 2 and manifest.accounted()


def test_a_crowd_of_near_identical_texts_past_the_largest_bucket_is_one_group(
        spark, tmp_path, monkeypatch):
    """Texts that differ only in punctuation share every band key: past ``LARGEST_BUCKET``
    members a bucket pairs its first with each other, and the crowd still keeps exactly one."""
    monkeypatch.setattr(spark_dedup, "LARGEST_BUCKET", 3)
    words = "a slow burn of a thriller that earns every minute of its long final act"
    texts = [words + mark for mark in (".", "!", "?", "...", "!!", " :)", " ;)")]
    texts.append("something else entirely, about a dog who finds his way home at last")
    pd.DataFrame({"text": texts, "label": "pos"}).to_csv(tmp_path / "in.csv", index=False)
    manifest = ingest_text(spark, make_config(tmp_path), str(tmp_path / "in.csv"),
                           str(tmp_path / "out"))
    assert manifest.discovered == 8 and manifest.accounted()
    assert manifest.quarantine == {"near_duplicate": 6}
