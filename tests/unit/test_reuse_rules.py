"""Which of a previous version's files a retrain copies whole (``files_kept_whole``): plain
Python over what the driver read of them; the Spark side is tested in test_image_ingest.py."""

from __future__ import annotations

from pipeline.config import load_config
from pipeline.ingest.image_reuse import Reused, StoredFile, files_kept_whole

LABELS = {"cat": 0, "dog": 1}
LAYOUT = load_config(overrides=["dataset.rows_per_row_group=4",
                                "dataset.min_row_groups=3"]).dataset


def _file(split: str, groups: int, *sources: str) -> StoredFile:
    return StoredFile(split, groups, list(sources))


def _reused(files: dict[str, StoredFile]) -> Reused:
    return Reused(rows=None, paths=frozenset(), files=files, label_map=LABELS)


FILES = {
    "v1/train/a.parquet": _file("train", 2, *"abcdefgh"),
    "v1/train/b.parquet": _file("train", 1, *"ijkl"),
    "v1/train/small.parquet": _file("train", 1, *"mno"),  # under one row group of 4 rows
    "v1/val/c.parquet": _file("val", 2, *"pqrstuvw"),  # alone, fewer than 3 row groups
}
EVERY = set("abcdefghijklmnopqrstuvw")


def test_files_whose_rows_all_stay_are_copied_unless_small_or_short_of_row_groups():
    assert files_kept_whole(_reused(FILES), EVERY, LAYOUT, LABELS) == [
        "v1/train/a.parquet", "v1/train/b.parquet"]


def test_a_file_with_a_row_gone_is_written_again_and_its_split_may_fall_short():
    kept = files_kept_whole(_reused(FILES), EVERY - {"j"}, LAYOUT, LABELS)
    assert kept == []  # a.parquet alone holds 2 row groups: train needs 3


def test_a_changed_label_map_copies_nothing():
    assert files_kept_whole(_reused(FILES), EVERY, LAYOUT, {"bird": 0, **LABELS}) == []
