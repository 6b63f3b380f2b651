"""Meaning-preserving rewrites of training texts, drawn afresh every epoch.

A classifier should not change its answer when a customer writes in capitals, drops a
comma, mistypes a letter or says hello first. Each epoch, each row is replaced by a
rewritten copy with probability ``share``; the label stays. Seeded by (seed, epoch), so
a run is reproducible and every epoch sees different variants.

Written apart from the consistency benchmark's perturbations (the benchmarks live in
the tools package beside the product, ``tools/gateway_tools/bench``, never imported
here): other phrase lists, other typo kinds (keyboard-neighbour substitution or a
dropped letter, never the bench's swap), random rather than hashed positions.
Contractions and texting abbreviations are never produced: they are the benchmark's
unseen variant types, kept out of training on purpose.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

GREETINGS = ("Hey,", "Hi team,", "Good afternoon,", "Hello support,", "Dear sir or madam,")
SIGN_OFFS = ("Many thanks.", "Kind regards.", "Thank you so much!", "Best wishes.", "Regards")
FILLERS = ("um", "so", "basically", "actually", "honestly", "well", "really")
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
NEIGHBOURS = {
    char: "".join(row[j] for j in (col - 1, col + 1) if 0 <= j < len(row))
    for row in _ROWS
    for col, char in enumerate(row)
}
SECOND_REWRITE = 0.3  # chance that a rewritten row gets a second, different rewrite


def case(text: str, rng: random.Random) -> str:
    change = rng.choice((str.lower, str.upper, str.title, str.swapcase))
    return change(text)


def spacing(text: str, rng: random.Random) -> str:
    """Join two words, or set punctuation apart: spacing that survives the serving
    path's whitespace normalisation (runs of spaces alone do not)."""
    gaps = [m.start() for m in re.finditer(r"(?<=\w) (?=\w)", text)]
    if rng.random() < 0.5 and gaps:
        cut = rng.choice(gaps)
        return text[:cut] + text[cut + 1 :]
    return re.sub(r"\s*([,.!?])", r" \1", text)


def punctuation(text: str, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return re.sub(r"\s+", " ", re.sub(r"[^\w\s']", " ", text)).strip()
    return text.rstrip(" .!?") + rng.choice(("?", ".", "...", "!!!", " ?"))


def typo(text: str, rng: random.Random) -> str:
    """One letter of a longer word replaced by a keyboard neighbour, or dropped."""
    words = list(re.finditer(r"[A-Za-z]{4,}", text))
    if not words:
        return text
    word = rng.choice(words)
    at = rng.randrange(word.start() + 1, word.end())
    letter = text[at]
    if rng.random() < 0.5:
        near = rng.choice(NEIGHBOURS[letter.lower()])
        return text[:at] + (near.upper() if letter.isupper() else near) + text[at + 1 :]
    return text[:at] + text[at + 1 :]


def greeting(text: str, rng: random.Random) -> str:
    kind = rng.randrange(3)
    if kind != 1:
        text = f"{rng.choice(GREETINGS)} {text}"
    if kind != 0:
        text = f"{text} {rng.choice(SIGN_OFFS)}"
    return text


def filler(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    words.insert(rng.randrange(len(words) + 1), rng.choice(FILLERS))
    return " ".join(words)


REWRITES: dict[str, Callable[[str, random.Random], str]] = {
    "case": case,
    "spacing": spacing,
    "punctuation": punctuation,
    "typo": typo,
    "greeting": greeting,
    "filler": filler,
}


def rewrite(text: str, rng: random.Random) -> str:
    """One rewrite, sometimes two different ones."""
    count = 2 if rng.random() < SECOND_REWRITE else 1
    for name in rng.sample(sorted(REWRITES), count):
        text = REWRITES[name](text, rng)
    return text


def augment(texts: Sequence[str], share: float, seed: int, epoch: int) -> list[str]:
    """``texts`` with about ``share`` of them rewritten; the same for the same seed and
    epoch, different from one epoch to the next."""
    rng = random.Random(f"augment:{seed}:{epoch}")
    return [rewrite(text, rng) if rng.random() < share else text for text in texts]
