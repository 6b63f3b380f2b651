"""Meaning-preserving input variations, deterministic for a given text.

Each function changes the surface only: letter case, spacing, punctuation, one typo in a
longer word, a polite prefix or suffix, a filler clause, contractions, texting
abbreviations. A classifier that understands the message gives every variant the same
label; that share is the consistency score.

``UNSEEN_TYPES`` are the kinds training's augmentation (``gateway.training.augment``,
written separately) never produces: consistency on them measures generalisation, not
memorised rewrites, and is reported apart from the seen kinds.
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


CONTRACTIONS = (
    ("do not", "don't"), ("does not", "doesn't"), ("did not", "didn't"), ("is not", "isn't"),
    ("are not", "aren't"), ("was not", "wasn't"), ("cannot", "can't"), ("will not", "won't"),
    ("have not", "haven't"), ("has not", "hasn't"), ("I am", "I'm"), ("I have", "I've"),
    ("I would", "I'd"), ("I will", "I'll"), ("it is", "it's"), ("you are", "you're"),
    ("what is", "what's"), ("that is", "that's"), ("there is", "there's"),
    ("where is", "where's"),
)  # fmt: skip
SMS = (
    ("please", "pls"), ("thanks", "thx"), ("thank you", "ty"), ("you", "u"), ("your", "ur"),
    ("are", "r"), ("because", "bc"), ("before", "b4"), ("message", "msg"),
    ("tomorrow", "tmrw"), ("with", "w/"), ("okay", "ok"),
)  # fmt: skip


def _replace_words(text: str, pairs: tuple[tuple[str, str], ...]) -> str:
    """Whole-word, case-insensitive replacement, all pairs in one pass (so no output is
    rewritten again); a capitalised source keeps its capital."""
    table = {source.lower(): target for source, target in pairs}
    pattern = re.compile(
        r"\b(" + "|".join(re.escape(k) for k in sorted(table, key=len, reverse=True)) + r")\b",
        re.IGNORECASE,
    )

    def swap(match: re.Match[str]) -> str:
        found, target = match.group(), table[match.group().lower()]
        return target[0].upper() + target[1:] if found[0].isupper() else target

    return pattern.sub(swap, text)


def contractions(text: str) -> str:
    """Contract every expandable phrase (do not -> don't); a text that already uses
    contractions gets them expanded instead (don't -> do not)."""
    plain = text.replace("\u2019", "'")
    contracted = _replace_words(plain, CONTRACTIONS)
    if contracted != plain:
        return contracted
    return _replace_words(plain, tuple((short, long) for long, short in CONTRACTIONS))


def sms(text: str) -> str:
    """Texting abbreviations: please -> pls, you -> u, thanks -> thx, ..."""
    return _replace_words(text, SMS)


PERTURBATIONS: dict[str, Callable[[str], str]] = {
    "lower": lower,
    "upper": upper,
    "extra_spaces": extra_spaces,
    "no_punctuation": strip_punctuation,
    "more_punctuation": add_punctuation,
    "typo": typo,
    "polite": polite,
    "filler": filler,
    "contractions": contractions,
    "sms": sms,
}
UNSEEN_TYPES = frozenset({"contractions", "sms"})


def variants(text: str, names: tuple[str, ...] | None = None) -> dict[str, str]:
    """The original plus each named perturbation (all of them by default)."""
    chosen = tuple(PERTURBATIONS) if names is None else names
    unknown = [n for n in chosen if n not in PERTURBATIONS]
    if unknown:
        raise ValueError(f"unknown perturbations {unknown}; known: {sorted(PERTURBATIONS)}")
    return {"original": text, **{n: PERTURBATIONS[n](text) for n in chosen}}
