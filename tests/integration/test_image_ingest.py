"""Spark -> Petastorm: the digits written as files come back pixel-exact, every input counted."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.datasets.manifest import read_manifest
from pipeline.datasets.reader import read_batches
from pipeline.datasets.writer import OutputExistsError
from pipeline.ingest.image_job import ingest_images

pytestmark = pytest.mark.integration


def test_manifest_accounts_for_every_file(digits_dataset):
    url, manifest = digits_dataset
    assert manifest.discovered == 5000
    assert manifest.accounted()
    assert manifest.quarantine == {}
    assert set(manifest.splits) == {"train", "val"}
    assert manifest.label_map == {str(d): d for d in range(10)}
    per_label_total = {label: sum(s.per_label.get(label, 0) for s in manifest.splits.values())
                       for label in manifest.label_map}
    assert per_label_total == {str(d): 500 for d in range(10)}
    assert 0.75 < manifest.splits["train"].rows / 5000 < 0.85
    # many more row groups than the 2 default workers
    assert manifest.splits["train"].row_groups >= 16
    assert manifest.splits["val"].row_groups >= 4
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


def test_broken_inputs_are_quarantined_not_lost(spark, config, digits_raw, tmp_path):
    raw = tmp_path / "raw"
    for label in ("3", "5"):
        (raw / label).mkdir(parents=True)
        for source in sorted((digits_raw / label).iterdir())[:20]:
            shutil.copy(source, raw / label / source.name)
    good = (raw / "3" / sorted(p.name for p in (raw / "3").iterdir())[0]).read_bytes()
    (raw / "3" / "truncated.png").write_bytes(good[: len(good) // 2])
    (raw / "5" / "notes.png").write_text("not an image at all")
    (raw / "5" / "empty.png").write_bytes(b"")
    (raw / "stray.png").write_bytes(good)  # directly in the root: no label
    (raw / "5" / ".hidden.png").write_bytes(good)  # Spark's reader skips it; we must not

    manifest = ingest_images(spark, config, str(raw), str(tmp_path / "out"))
    assert manifest.discovered == 45
    assert manifest.accounted()
    assert manifest.quarantine == {"corrupt_image": 1, "empty_file": 1, "hidden_file": 1,
                                   "no_label": 1, "not_an_image": 1}
    table = pq.read_table(tmp_path / "out" / "quarantine").to_pandas()
    assert len(table) == 5
    by_name = {row.path.rsplit("/", 1)[-1]: row for row in table.itertuples()}
    assert by_name["truncated.png"].reason == "corrupt_image"
    assert by_name["stray.png"].reason == "no_label"
    assert all(table["detail"].str.len() > 0)
