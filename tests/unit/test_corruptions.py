"""The corruptions are seeded, keep shapes and types, and grow with severity."""

import numpy as np
import pytest

from pipeline.evaluation import corruptions
from pipeline.ingest.tokens import OOV, PAD

RNG_SEED = 7


def _images() -> np.ndarray:
    rng = np.random.default_rng(0)
    images = np.zeros((6, 28, 28, 3), np.float32)
    images[:, 8:20, 10:18] = rng.uniform(150, 255, (6, 12, 8, 3))  # a bright stroke on black
    return images


def _tokens() -> np.ndarray:
    ids = np.full((4, 20), PAD, np.int32)
    for i, n in enumerate((20, 15, 8, 3)):
        ids[i, :n] = np.arange(2, n + 2)
    return ids


@pytest.mark.parametrize("corruption", corruptions.IMAGE_CORRUPTIONS, ids=lambda c: c.name)
def test_image_corruptions_are_seeded_and_grow_with_severity(corruption):
    images = _images()
    changes = []
    for level in corruption.levels:
        first = corruption.apply(images, level, np.random.default_rng(RNG_SEED))
        again = corruption.apply(images, level, np.random.default_rng(RNG_SEED))
        np.testing.assert_array_equal(first, again)
        assert first.shape == images.shape and first.dtype == np.float32
        assert first.min() >= 0 and first.max() <= 255
        changes.append(float(np.abs(first - images).mean()))
    assert 0 < changes[0] < changes[2], changes
    np.testing.assert_array_equal(images, _images())  # the input is left alone


@pytest.mark.parametrize("corruption", corruptions.TOKEN_CORRUPTIONS, ids=lambda c: c.name)
def test_token_corruptions_keep_padding_at_the_end_and_grow_with_severity(corruption):
    ids = _tokens()
    changed = []
    for level in corruption.levels:
        out = corruption.apply(ids, level, np.random.default_rng(RNG_SEED))
        assert out.shape == ids.shape and out.dtype == np.int32
        for row in out:
            filled = row != PAD
            assert not filled[np.argmin(filled):].any() or filled.all()  # no gap before PAD
        changed.append(int((out != ids).sum()))
    assert 0 < changed[0] <= changed[2], changed


def test_out_of_vocabulary_only_replaces_words():
    out = corruptions.out_of_vocabulary(_tokens(), 1.0, np.random.default_rng(0))
    assert set(np.unique(out)) == {PAD, OOV}
    assert ((out == PAD) == (_tokens() == PAD)).all()


def test_typos_misspell_words_with_one_edit():
    text = ["the quick brown fox jumps over the lazy dog"]
    assert corruptions.typos(text, 0.0, np.random.default_rng(0)) == text
    (misspelt,) = corruptions.typos(text, 1.0, np.random.default_rng(0))
    words, originals = misspelt.split(" "), text[0].split(" ")
    assert len(words) == len(originals)
    assert all(w != o and abs(len(w) - len(o)) <= 1 for w, o in zip(words, originals, strict=True))
    assert corruptions.typos(text, 0.5, np.random.default_rng(3)) == corruptions.typos(
        text, 0.5, np.random.default_rng(3))


def test_explained_rows_are_the_most_confident_right_and_wrong_per_class():
    from pipeline.evaluation.explanations import chosen_rows

    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3], [0.45, 0.55]])
    labels = np.array([0, 0, 1, 1, 0])
    # class 0: right 0 (0.9) then 1; wrong as 0: row 3; class 1: right 2; wrong as 1: row 4
    assert chosen_rows(probs, labels, 1) == [0, 3, 2, 4]
    assert chosen_rows(probs, labels, 2) == [0, 1, 3, 2, 4]


def test_the_token_page_escapes_words_and_colours_by_sign():
    from pipeline.tracking.explanation_report import token_page, top_tokens

    page = token_page(["true a, predicted b (0.90)"], [["<b>", "fine"]],
                      [np.array([0.5, -0.25])])
    assert "&lt;b&gt;" in page and "<b>" not in page.split("</title>")[1].split("<p>")[2]
    assert "rgba(220,50,32,1.00)" in page and "rgba(30,90,200,0.50)" in page
    assert top_tokens([["x", "y"], ["y"]], [np.array([0.1, 0.2]), np.array([0.3])],
                      ["pos", "pos"]) == {"pos": [("y", 0.5), ("x", 0.1)]}
