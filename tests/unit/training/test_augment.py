"""Training-time rewrites: seeded, fresh each epoch, and never a benchmark-only kind."""

from __future__ import annotations

import random
import re

import pytest

from gateway.training.augment import FILLERS, GREETINGS, NEIGHBOURS, REWRITES, SIGN_OFFS, augment
from gateway_tools.bench.consistency.perturb import CONTRACTIONS, SMS

TEXTS = [
    "I do not know why my card payment was declined, please help.",
    "I am still waiting for my card, you said it would come before Friday. Thanks",
    "Why is there a fee on my transfer?",
    "I cannot find the top up option in your app",
]


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def test_the_same_seed_and_epoch_give_the_same_rewrites() -> None:
    assert augment(TEXTS, 0.5, 0, 1) == augment(TEXTS, 0.5, 0, 1)
    assert augment(TEXTS * 5, 0.5, 0, 1) != augment(TEXTS * 5, 0.5, 0, 2)
    assert augment(TEXTS * 5, 0.5, 0, 1) != augment(TEXTS * 5, 0.5, 1, 1)
    assert augment(TEXTS, 0.0, 0, 1) == TEXTS


def test_about_share_of_the_rows_are_rewritten() -> None:
    rewritten = augment(TEXTS * 100, 0.5, 0, 1)
    changed = sum(a != b for a, b in zip(rewritten, TEXTS * 100, strict=True))
    assert 150 < changed < 250  # 400 rows; a few rewrites leave their text as it was


def test_no_contraction_or_texting_abbreviation_is_ever_made() -> None:
    """Those are the benchmark's unseen variant types."""
    unseen = {w for _, short in (*CONTRACTIONS, *SMS) for w in _words(short)}
    for epoch in range(50):
        for before, after in zip(TEXTS, augment(TEXTS, 1.0, 0, epoch), strict=True):
            made = set(_words(after)) - set(_words(before))
            assert not made & unseen, (before, after)


@pytest.mark.parametrize("seed", range(20))
def test_each_rewrite_keeps_the_message(seed: int) -> None:
    text = TEXTS[0]
    rng = random.Random(seed)
    words = _words(text)
    assert REWRITES["case"](text, rng).lower() == text.lower()
    greeted = REWRITES["greeting"](text, rng)
    assert text in greeted and greeted != text
    assert greeted.removeprefix(text).strip() in SIGN_OFFS or any(
        greeted.startswith(g) for g in GREETINGS
    )
    filled = _words(REWRITES["filler"](text, rng))
    extra = list(filled)
    for word in words:
        extra.remove(word)
    assert len(extra) == 1 and extra[0] in FILLERS
    typo = REWRITES["typo"](text, rng)
    diffs = [(a, b) for a, b in zip(_words(typo), words, strict=True) if a != b]
    assert len(diffs) == 1
    mistyped, word = diffs[0]
    if len(mistyped) == len(word):  # one letter replaced by a keyboard neighbour
        [(got, was)] = [(a, b) for a, b in zip(mistyped, word, strict=True) if a != b]
        assert got in NEIGHBOURS[was]
    else:  # one letter dropped
        assert any(word[:i] + word[i + 1 :] == mistyped for i in range(len(word)))
    spaced = REWRITES["spacing"](text, rng)
    assert re.sub(r"[\s]", "", spaced) == re.sub(r"[\s]", "", text)
