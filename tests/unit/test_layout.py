"""How a split is cut into row groups and files (pure arithmetic, no Spark)."""

from __future__ import annotations

import pytest

from pipeline.config import DatasetConfig
from pipeline.datasets.parquet import row_group_rows
from pipeline.datasets.writer import plan_layout


def layout(rows=1024, min_groups=16, per_file=16, mb=32) -> DatasetConfig:
    return DatasetConfig(rows_per_row_group=rows, min_row_groups=min_groups,
                         row_groups_per_file=per_file, row_group_size_mb=mb)


@pytest.mark.parametrize("rows", [1, 15, 16, 30, 300, 4013])
def test_a_small_split_still_has_min_row_groups(rows):
    plan = plan_layout(rows, layout())
    groups = -(-rows // plan.group_rows)
    assert min(rows, 16) <= groups < 2 * 16
    assert plan.files <= 2


def test_a_large_split_is_capped_in_rows_and_shares_files():
    plan = plan_layout(100_000_000, layout())
    assert plan.group_rows == 1024
    groups = -(-100_000_000 // 1024)
    assert plan.files == -(-groups // 16)


def test_one_group_per_file_when_asked():
    plan = plan_layout(10_000, layout(rows=100, min_groups=1, per_file=1))
    assert (plan.group_rows, plan.files) == (100, 100)


def test_row_groups_are_equal_with_no_sliver():
    # 1,250 rows under a 1,200-row cap: two groups of 625, not 1,200 + 50
    assert row_group_rows(1250, 1250 * 100, 1200, None) == 625
    assert row_group_rows(3487, 0, 1200, None) == 1163


def test_row_groups_are_also_capped_in_bytes():
    # 1,000 rows of 1 MiB each under a 32 MiB cap: 32 rows a group (equalised)
    assert row_group_rows(1000, 1000 * 2**20, 1024, 32 * 2**20) == 32
    # never below one row, however large a row is
    assert row_group_rows(3, 3 * 2**30, 1024, 2**20) == 1
