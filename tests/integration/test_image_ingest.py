"""Spark -> Petastorm: the digits written as files come back pixel-exact, every input counted."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.datasets.commit import OutputExistsError
from pipeline.datasets.manifest import read_manifest
from pipeline.datasets.reader import read_batches
from pipeline.ingest.image_job import ingest_images
from tests.conftest import make_config
from tests.corpus import CORPUS_CONFIG_OVERRIDES, write_image_corpus


def test_manifest_accounts_for_every_file(digits_dataset):
    url, manifest = digits_dataset
    assert manifest.discovered == 5000
    assert manifest.accounted()
    assert manifest.quarantine == {}
    assert set(manifest.splits) == {"train", "val", "test"}
    assert manifest.label_map == {str(d): d for d in range(10)}
    per_label_total = {label: sum(s.per_label.get(label, 0) for s in manifest.splits.values())
                       for label in manifest.label_map}
    assert per_label_total == {str(d): 500 for d in range(10)}
    assert 0.75 < manifest.splits["train"].rows / 5000 < 0.85
    # many more row groups than the 2 default workers
    assert manifest.splits["train"].row_groups >= 16
    assert manifest.splits["val"].row_groups >= 4
    assert manifest.extra["max_workers"] >= 4
    assert read_manifest(url).fingerprint == manifest.fingerprint


def test_every_row_reads_back_pixel_exact(digits_dataset, digits_raw):
    url, manifest = digits_dataset
    seen = 0
    for split, info in manifest.splits.items():
        rows = 0
        for batch in read_batches(url, split, ("image", "label", "label_name", "source"), 256):
            for image, label, label_name, source in zip(batch["image"], batch["label"],
                                                        batch["label_name"], batch["source"],
                                                        strict=True):
                raw_path = source.removeprefix("file:")
                original = np.asarray(Image.open(raw_path).convert("L"))
                np.testing.assert_array_equal(image, np.stack([original] * 3, axis=-1),
                                              err_msg=raw_path)
                assert label_name == raw_path.split("/")[-2]
                assert label == manifest.label_map[label_name]
            rows += len(batch["image"])
        assert rows == info.rows, f"{split}: read {rows} rows, manifest says {info.rows}"
        seen += rows
    assert seen == 5000


@pytest.mark.parametrize("shards", [2, 3])
def test_sharded_reads_are_disjoint_and_complete(digits_dataset, shards):
    url, manifest = digits_dataset
    per_shard = []
    for shard in range(shards):
        hashes = []
        for batch in read_batches(url, "train", ("content_hash",), 512, shard=shard,
                                  shard_count=shards):
            hashes.extend(batch["content_hash"].tolist())
        assert hashes, f"shard {shard} of {shards} read no rows"
        per_shard.append(hashes)
    everything = [h for hashes in per_shard for h in hashes]
    assert len(everything) == manifest.splits["train"].rows
    assert len(set(everything)) == len(everything)  # disjoint: no row in two shards


def test_rerun_gives_the_same_fingerprint_and_existing_output_is_refused(
        spark, config, digits_raw, digits_dataset, tmp_path):
    _, first = digits_dataset
    again = ingest_images(spark, config, str(digits_raw), str(tmp_path / "again"))
    assert again.fingerprint == first.fingerprint
    assert {k: v.rows for k, v in again.splits.items()} == {
        k: v.rows for k, v in first.splits.items()}
    with pytest.raises(OutputExistsError, match="already exists"):
        ingest_images(spark, config, str(digits_raw), str(tmp_path / "again"))
    replaced = ingest_images(spark, config, str(digits_raw), str(tmp_path / "again"),
                             mode="overwrite")
    assert replaced.fingerprint == first.fingerprint
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == [], f"staging directories left behind: {leftovers}"


def test_broken_and_odd_images_are_all_accounted_for(spark, tmp_path):
    expected = write_image_corpus(tmp_path / "raw")
    outside = tmp_path / "outside.png"  # a real image, but reached by a link out of the root
    outside.write_bytes(next((tmp_path / "raw").rglob("*.png")).read_bytes())
    (tmp_path / "raw" / "cat" / "link.png").symlink_to(outside)
    expected["cat/link.png"] = "symlink_outside_root"
    # a dangling link inside the root: listed, skipped by Spark's reader, so quarantined
    (tmp_path / "raw" / "cat" / "gone.png").symlink_to(tmp_path / "raw" / "cat" / "never.png")
    expected["cat/gone.png"] = "unreadable"
    cfg = make_config(tmp_path, *CORPUS_CONFIG_OVERRIDES)
    manifest = ingest_images(spark, cfg, str(tmp_path / "raw"), str(tmp_path / "out"))
    assert manifest.discovered == len(expected)
    assert manifest.accounted()

    root = f"file:{tmp_path / 'raw'}/"
    quarantine = pq.read_table(tmp_path / "out" / "quarantine").to_pandas()
    got = {row.path.removeprefix(root): row.reason for row in quarantine.itertuples()}
    details = {row.path.removeprefix(root): row.detail for row in quarantine.itertuples()}
    accepted = {}
    for split in manifest.splits:
        for batch in read_batches(f"file://{tmp_path / 'out'}", split,
                                  ("image", "source", "label_name", "original_width",
                                   "original_height"), 64):
            for image, source, label, width, height in zip(
                    batch["image"], batch["source"], batch["label_name"],
                    batch["original_width"], batch["original_height"], strict=True):
                relative = source.removeprefix(root)
                assert image.shape == (28, 28, 3), relative  # every accepted row decodes
                assert label == relative.split("/")[0]
                with Image.open(source.removeprefix("file:")) as original:  # before any resize
                    assert (width, height) == original.size, relative
                accepted[relative] = "accepted"
    assert not set(accepted) & set(got), "an input is both accepted and quarantined"
    outcome = {**got, **accepted}
    assert sorted(outcome) == sorted(expected)

    groups: dict[str, list[str]] = {}
    for relative, want in expected.items():
        if want.startswith("duplicate_group:"):
            groups.setdefault(want, []).append(relative)
        else:
            assert outcome[relative] == want, relative
    for members in groups.values():
        kept = [m for m in members if outcome[m] == "accepted"]
        assert len(kept) == 1, members
        for member in set(members) - set(kept):
            assert outcome[member] == "duplicate"
            assert details[member] == f"duplicate of {root}{kept[0]}"


def _small_image_folder(root, digits_raw) -> None:
    """Two digits per label, and a 'big.png' of 20,000 random bytes: not an image, so only
    its size can have quarantined it as too_large."""
    for label in ("3", "7"):
        (root / label).mkdir(parents=True)
        for source in sorted((digits_raw / label).iterdir())[:2]:
            (root / label / source.name).write_bytes(source.read_bytes())
    (root / "7" / "big.png").write_bytes(np.random.default_rng(0).bytes(20_000))


def test_files_over_max_file_bytes_are_quarantined_unread(spark, digits_raw, tmp_path):
    _small_image_folder(tmp_path / "raw", digits_raw)
    cfg = make_config(tmp_path, "ingest.max_file_bytes=10000")
    manifest = ingest_images(spark, cfg, str(tmp_path / "raw"), str(tmp_path / "out"))
    assert manifest.discovered == 5 and manifest.accounted()
    assert manifest.quarantine == {"too_large": 1}
    quarantine = pq.read_table(tmp_path / "out" / "quarantine").to_pylist()
    assert quarantine == [{"path": f"file:{tmp_path / 'raw'}/7/big.png", "reason": "too_large",
                           "detail": "listed size 20000 bytes is over ingest.max_file_bytes "
                                     "(10000); not read"}]


def test_filesystems_pyarrow_cannot_open_are_listed_by_hadoop_and_read_by_spark(
        spark, digits_raw, tmp_path, monkeypatch):
    """The fallback for gs://, abfs:// and the like, forced here on local files: the same
    outcome, and a file Spark's reader does not return is still ``unreadable``."""
    from pipeline.spark import files, listing

    _small_image_folder(tmp_path / "raw", digits_raw)
    monkeypatch.setattr(listing, "is_local", lambda uri: False)
    monkeypatch.setattr(listing, "through_storage", lambda uri: False)
    cfg = make_config(tmp_path, "ingest.max_file_bytes=10000")
    manifest = ingest_images(spark, cfg, str(tmp_path / "raw"), str(tmp_path / "out"))
    assert manifest.discovered == 5 and manifest.accounted()
    assert manifest.quarantine == {"too_large": 1}
    assert sum(split.rows for split in manifest.splits.values()) == 4

    gone = f"file:{tmp_path / 'raw'}/3/gone.png"
    kept = f"file:{next((tmp_path / 'raw' / '3').iterdir())}"
    with files.read_files(spark, {kept: 1, gone: 1}, str(tmp_path / "raw")) as scan:
        rows = {row.path: (row.content is not None, row.error) for row in scan.rows.collect()}
    assert rows == {kept: (True, None), gone: (False, files.NOT_RETURNED)}


def test_inputs_that_are_all_quarantined_make_a_version_of_quarantine_alone(spark, config,
                                                                          tmp_path):
    """No label is left to index (Spark once failed on the empty label map, deep in a Java
    stack): the version holds no split, and every input is in its quarantine."""
    for label in ("cat", "dog"):
        (tmp_path / "raw" / label).mkdir(parents=True)
        (tmp_path / "raw" / label / "notes.png").write_bytes(b"not an image at all")
    manifest = ingest_images(spark, config, str(tmp_path / "raw"), str(tmp_path / "out"))
    assert (manifest.discovered, manifest.splits, manifest.label_map) == (2, {}, {})
    assert manifest.quarantine == {"not_an_image": 2} and manifest.accounted()
    assert read_manifest(f"file://{tmp_path / 'out'}").quarantine == manifest.quarantine


def _stored(version_uri: str, manifest) -> tuple[dict, list]:
    """(source -> every stored column of its row, with its split; sorted quarantine rows),
    after checking that no input is stored twice and the manifest counts every row."""
    rows = {}
    for split, info in manifest.splits.items():
        table = pq.read_table(f"{version_uri}/{split}".removeprefix("file://"))
        assert table.num_rows == info.rows, split
        rows |= {row["source"]: {**row, "split": split} for row in table.to_pylist()}
    assert len(rows) == sum(info.rows for info in manifest.splits.values())
    quarantine = pq.read_table(f"{version_uri}/quarantine".removeprefix("file://")).to_pylist()
    return rows, sorted(quarantine, key=lambda row: row["path"])


def _copied(out, old: str, new: str) -> list:
    """The Parquet files of version ``new`` that are copies of version ``old``'s."""
    return [part for part in (out / new).rglob("part-*.parquet")
            if (out / old / part.parent.name / part.name).exists()]


def _change(raw, digits, expected: dict[str, str], first_rows: dict) -> set[str]:
    """New files, a changed file (one with a '#' in its name too), a removed one, and the kept
    member of a duplicate group gone: the sources of the first version no longer there."""
    for path in digits[150:170]:
        (raw / path.parent.name / path.name).write_bytes(path.read_bytes())
    changed = raw / digits[0].parent.name / digits[0].name
    changed.write_bytes(digits[-1].read_bytes())
    (raw / digits[170].parent.name / "odd#1.png").write_bytes(digits[171].read_bytes())
    (raw / digits[1].parent.name / digits[1].name).unlink()
    group = next(want for want in expected.values() if want.startswith("duplicate_group:"))
    (kept,) = [raw / relative for relative, want in expected.items()
               if want == group and f"file:{raw / relative}" in first_rows]
    kept.unlink()
    return {f"file:{changed}", f"file:{raw / digits[1].parent.name / digits[1].name}",
            f"file:{kept}", f"file:{raw / digits[170].parent.name / 'odd#1.png'}"}


def _full_build(spark, cfg, raw, tmp_path, reuse, first):
    """The full build, from a version an earlier release wrote (no row rules): nothing reused."""
    earlier = tmp_path / "earlier"
    shutil.copytree(first.extra["version_uri"].removeprefix("file://"), earlier)
    manifest = json.loads((earlier / "manifest.json").read_text())
    del manifest["extra"]["row_rules"]
    (earlier / "manifest.json").write_text(json.dumps(manifest))
    full = ingest_images(spark, cfg, str(raw), str(tmp_path / "full"),
                         reuse=replace(reuse, version_uri=earlier.as_uri()))
    assert full.extra["reused_rows"] == full.extra["carried_files"] == 0
    return full


def _reuse(before, raw, version):
    from pipeline.ingest.image_reuse import Reuse
    from pipeline.retrain.inputs import compare, take_snapshot

    now = take_snapshot(raw.as_uri(), before)
    changes = compare(before, now)
    return Reuse(version.extra["version_uri"],
                 frozenset(now) - frozenset(changes.new + changes.changed)), now


def test_a_version_built_on_the_previous_rows_equals_a_full_rebuild(spark, digits_raw,
                                                                    tmp_path):
    """What a retrain does: inputs unchanged since the last version keep its rows, and its
    files whose rows all stay are copied whole; new, changed and quarantined inputs are
    decoded. Nothing but the file layout tells the result from a full build."""
    from pipeline.retrain.inputs import take_snapshot

    raw, out = tmp_path / "raw", tmp_path / "out"
    expected = write_image_corpus(raw)
    digits = sorted(digits_raw.rglob("*.png"))
    for path in [*digits[:150], digits[170]]:
        (raw / path.parent.name).mkdir(exist_ok=True)
        name = "odd#1.png" if path == digits[170] else path.name
        (raw / path.parent.name / name).write_bytes(path.read_bytes())
    # two row groups of at most 8 rows per file: many files, most untouched by the changes
    cfg = make_config(tmp_path, *CORPUS_CONFIG_OVERRIDES, "dataset.rows_per_row_group=8",
                      "dataset.row_groups_per_file=2", "dataset.min_row_groups=2")
    before = take_snapshot(raw.as_uri())
    first = ingest_images(spark, cfg, str(raw), str(out), mode="new-version")
    first_rows, _ = _stored(first.extra["version_uri"], first)
    gone = _change(raw, digits, expected, first_rows)
    reuse, now = _reuse(before, raw, first)
    second = ingest_images(spark, cfg, str(raw), str(out), mode="new-version", reuse=reuse)
    full = _full_build(spark, cfg, raw, tmp_path, reuse, first)

    assert second.extra["reused_rows"] == len(set(first_rows) - gone) > 100
    copied = _copied(out, "v0001", "v0002")
    assert 0 < second.extra["carried_files"] == len(copied)
    assert len(copied) <= len(list((out / "v0001").rglob("part-*.parquet"))) - 3  # 3 touched
    # a file of less than a full row group (8 rows here) is written again, never carried
    assert all(pq.read_metadata(part).num_rows >= 8 for part in copied)
    assert second.fingerprint == full.fingerprint != first.fingerprint
    for field in ("discovered", "label_map", "quarantine"):
        assert getattr(second, field) == getattr(full, field), field
    assert ({name: (info.rows, info.per_label) for name, info in second.splits.items()}
            == {name: (info.rows, info.per_label) for name, info in full.splits.items()})
    assert second.extra["statistics"] == full.extra["statistics"]
    rows, quarantine = _stored(second.extra["version_uri"], second)
    assert (rows, quarantine) == _stored(full.extra["version_uri"], full)
    for source in gone & set(rows):  # changed since: decoded again
        assert rows[source]["content_hash"] != first_rows[source]["content_hash"], source

    # a new label sorted among the others: stored indices shift, so no file is copied as it is
    (raw / "0_new").mkdir()
    for path in digits[172:174]:
        (raw / "0_new" / path.name).write_bytes(path.read_bytes())
    third = ingest_images(spark, cfg, str(raw), str(out), mode="new-version",
                          reuse=_reuse(now, raw, second)[0])
    assert third.extra["reused_rows"] == len(rows) and third.extra["carried_files"] == 0
    assert third.label_map != second.label_map
    stored, _ = _stored(third.extra["version_uri"], third)
    assert all(row["label"] == third.label_map[row["label_name"]] for row in stored.values())
