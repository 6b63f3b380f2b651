"""Meaning-preserving input variations, deterministic for a given text.

Each function changes the surface only: letter case, spacing, punctuation, one typo in a
longer word, a polite prefix or suffix, a filler clause. A classifier that understands
the message gives every variant the same label; that share is the consistency score.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable


def _pick(text: str, salt: str, n: int) -> int:
    """A stable choice in ``range(n)`` derived from the text (no global random state)."""
    digest = hashlib.sha256(f"{salt}:{text}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % n


def lower(text: str) -> str:
    return text.lower()


def upper(text: str) -> str:
    return text.upper()


def extra_spaces(text: str) -> str:
    return "  " + re.sub(r" ", "   ", text.strip()) + "  "


def strip_punctuation(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s']", " ", text)).strip()


def add_punctuation(text: str) -> str:
    return text.rstrip(" .!?") + "!!"


def typo(text: str) -> str:
    """Swap two different inner letters of one word of 5+ letters (chosen by the text's
    hash; words and positions are tried in a fixed order until the swap changes something)."""
    words = list(re.finditer(r"[A-Za-z]{5,}", text))
    start = _pick(text, "typo", len(words)) if words else 0
    for match in words[start:] + words[:start]:
        word = match.group()
        offset = _pick(text, "typo-pos", len(word) - 3)
        for k in range(len(word) - 3):
            i = 1 + (offset + k) % (len(word) - 3)
            if word[i] != word[i + 1]:
                swapped = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
                return text[: match.start()] + swapped + text[match.end() :]
    return text


PREFIXES = ("Hi there, ", "Hello, ", "Good morning! ", "Quick question: ")
SUFFIXES = (" Thanks!", " Thank you in advance.", " Cheers.", " Appreciate your help.")
FILLERS = (", by the way,", ", if that makes sense,", ", just so you know,")


def polite(text: str) -> str:
    prefix = PREFIXES[_pick(text, "prefix", len(PREFIXES))]
    suffix = SUFFIXES[_pick(text, "suffix", len(SUFFIXES))]
    return prefix + text[0].lower() + text[1:] + suffix if text else text


def filler(text: str) -> str:
    """Insert a filler clause after the first word."""
    first, _, rest = text.partition(" ")
    if not rest:
        return text
    return f"{first}{FILLERS[_pick(text, 'filler', len(FILLERS))]} {rest}"


PERTURBATIONS: dict[str, Callable[[str], str]] = {
    "lower": lower,
    "upper": upper,
    "extra_spaces": extra_spaces,
    "no_punctuation": strip_punctuation,
    "more_punctuation": add_punctuation,
    "typo": typo,
    "polite": polite,
    "filler": filler,
}


def variants(text: str, names: tuple[str, ...] | None = None) -> dict[str, str]:
    """The original plus each named perturbation (all of them by default)."""
    chosen = tuple(PERTURBATIONS) if names is None else names
    unknown = [n for n in chosen if n not in PERTURBATIONS]
    if unknown:
        raise ValueError(f"unknown perturbations {unknown}; known: {sorted(PERTURBATIONS)}")
    return {"original": text, **{n: PERTURBATIONS[n](text) for n in chosen}}
