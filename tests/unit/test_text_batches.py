"""The text job's batch passes, outside Spark: frames of records, token counts, token ids."""

from __future__ import annotations

import pickle

import pandas as pd

from pipeline.config import load_config
from pipeline.datasets.features import decode_token_ids
from pipeline.ingest import text_batches
from pipeline.ingest.text_batches import (
    count_tokens,
    record_frames,
    unit_records,
    with_token_ids,
)
from pipeline.ingest.text_records import RawDocument, TextRecord, clean_text_document
from pipeline.ingest.tokens import Tokenizer, vocab_text

CFG = load_config()
RATIOS = CFG.split.model_dump()


def test_record_frames_hold_every_record_in_bounded_frames(monkeypatch):
    monkeypatch.setattr(text_batches, "RECORDS_PER_FRAME", 3)
    records = [TextRecord.rejected(f"f{i}", i, "empty_text", "nothing") for i in range(7)]
    frames = list(record_frames(records))
    assert [len(frame) for frame in frames] == [3, 3, 1]
    assert list(frames[0].columns) == list(TextRecord._fields)
    assert [TextRecord(*row) for frame in frames for row in frame.itertuples(index=False)
            ] == records


def test_units_are_read_and_their_documents_cleaned():
    def read(unit):
        return [RawDocument(unit, 1, "Fine words here", "pos"),
                TextRecord.rejected(unit, 2, "malformed_row", "line 2: bad")]

    frame = pd.DataFrame({"unit": [pickle.dumps("a.csv"), pickle.dumps("b.csv")]})
    out = pd.concat(list(unit_records([frame], read, CFG.text, RATIOS)))
    assert out["source"].tolist() == ["a.csv", "a.csv", "b.csv", "b.csv"]
    assert out["reason"].tolist() == [None, "malformed_row", None, "malformed_row"]
    expected = clean_text_document("a.csv", 1, "Fine words here", "pos", CFG.text, RATIOS)
    assert TextRecord(*out.iloc[0]) == expected


def test_count_tokens_and_ids_match_the_tokenizer():
    texts = ["a film about a dog", "the dog again", "a cat"]
    counted = pd.concat(list(count_tokens([pd.DataFrame({"text": texts[:2]}),
                                           pd.DataFrame({"text": texts[2:]})], r"[\w']+")))
    counts = dict(zip(counted["token"], counted["count"], strict=True))
    assert counts == {"a": 3, "film": 1, "about": 1, "dog": 2, "the": 1, "again": 1, "cat": 1}
    vocabulary = vocab_text(["<pad>", "<oov>", "a", "dog"])
    frame = pd.DataFrame({"text": ["a dog", "gone"], "reason": [None, "duplicate"],
                          "profile": ['{"chars": 5}', '{"chars": 4}']})
    out = next(with_token_ids([frame], vocabulary, 4, r"[\w']+"))
    ids, length = Tokenizer.from_vocab_text(vocabulary, r"[\w']+", 4)("a dog")
    assert decode_token_ids(out["token_ids"][0]).tolist() == ids.tolist()
    assert out["length"].tolist() == [length, pd.NA]
    assert out["profile"][0] == '{"chars": 5, "oov": 0.0}' and out["profile"][1] is None
    assert out["token_ids"][1] is None
