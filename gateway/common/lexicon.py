"""Bring a message back to the spelling and casing an adapter was trained on.

A small model's answer can flip on a surface change a person would not notice: one
swapped letter (``recieve``), a message typed in lower case, extra spaces. Each of those
moves the text off the training distribution by a few tokens. The lexicon is the words
of the adapter's own training texts with their counts; serving rewrites each word it
does not know to the most frequent known word one edit away (Damerau: a deletion,
insertion, substitution or transposition), gives all-lower-case words their usual casing,
and collapses runs of spaces and of ``!``/``?``. Only the text the classifier reads is
rewritten; the client's answer carries how many words were changed.

Words shorter than ``MIN_FIX_LENGTH`` are never corrected: at two or three letters too
many known words are one edit away for the choice to mean anything.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

LEXICON_FORMAT, LEXICON_VERSION = "word_counts", 1
MIN_FIX_LENGTH = 4
MAX_WORD_LENGTH = 32  # longer "words" are ids or noise: left alone, and no edit blow-up
MAX_WORDS = 256  # words looked at per text: a huge message costs bounded work
_WORDS = re.compile(r"[A-Za-z]+")
_SPACES = re.compile(r"\s+")
_REPEATS = re.compile(r"([!?])\1+")


@dataclass(frozen=True)
class Canonical:
    text: str
    corrections: int  # words rewritten (spelling or casing)


@dataclass(frozen=True)
class Lexicon:
    """``counts``: each cased word form seen after a text's first word (so casing is the
    casing words take mid-sentence); ``capitalize_first``: most texts start with a capital."""

    counts: Mapping[str, int]
    capitalize_first: bool
    _by_lower: dict[str, tuple[str, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        totals: Counter[str] = Counter()
        best: dict[str, tuple[int, str]] = {}
        for word, count in self.counts.items():
            key = word.lower()
            totals[key] += count
            if (count, word) > best.get(key, (0, "")):
                best[key] = (count, word)
        by_lower = {key: (best[key][1], total) for key, total in totals.items()}
        object.__setattr__(self, "_by_lower", by_lower)

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Lexicon:
        counts: Counter[str] = Counter()
        starts = capitals = 0
        for text in texts:
            words = _WORDS.findall(text)
            if not words:
                continue
            first = words[0]
            starts += 1
            capitals += first[0].isupper()
            counts.update(words[1:])
            # A capital there is the position's, not the word's ("Why", "Hello").
            counts[first.lower() if _is_capitalised(first) else first] += 1
        return cls(dict(counts), capitals * 2 > starts)

    def block(self) -> dict:
        """The manifest block; ``gateway.registry.answers.read_lexicon`` reads it back."""
        return {"format": LEXICON_FORMAT, "version": LEXICON_VERSION,
                "capitalize_first": self.capitalize_first,
                "words": dict(sorted(self.counts.items()))}  # fmt: skip

    def canonical(self, text: str) -> Canonical:
        spaced = _REPEATS.sub(r"\1", _SPACES.sub(" ", text).strip())
        out: list[str] = []
        corrections = position = 0
        for index, match in enumerate(_WORDS.finditer(spaced)):
            word = match.group()
            fixed = self._word(word) if index < MAX_WORDS else word
            if index == 0 and self.capitalize_first and fixed[0].islower():
                fixed = fixed[0].upper() + fixed[1:]
            corrections += fixed != word
            out += [spaced[position : match.start()], fixed]
            position = match.end()
        out.append(spaced[position:])
        return Canonical("".join(out), corrections)

    def _word(self, word: str) -> str:
        """A known word keeps its letters (an all-lower-case one takes its usual casing);
        an unknown one becomes its nearest known word, in the casing it was typed in."""
        if len(word) > MAX_WORD_LENGTH:
            return word
        known = self._by_lower.get(word.lower())
        if known is not None:
            return known[0] if word.islower() else word
        if len(word) < MIN_FIX_LENGTH:
            return word
        near = self._nearest(word.lower())
        if near is None:
            return word
        return near[0] if word.islower() else _cased_like(near[0], word)

    def _nearest(self, lower: str) -> tuple[str, int] | None:
        found = [self._by_lower[c] for c in set(_edits(lower)) if c in self._by_lower]
        if not found:
            return None
        return max(found, key=lambda entry: (entry[1], entry[0]))


def _is_capitalised(word: str) -> bool:
    return word[0].isupper() and word[1:].islower()


def _cased_like(known: str, word: str) -> str:
    """``known`` with ``word``'s casing pattern: all upper, capitalised, or as known."""
    if word.isupper() and len(word) > 1:
        return known.upper()
    if word[0].isupper():
        return known[0].upper() + known[1:]
    return known


def _edits(word: str) -> Iterator[str]:
    """Every string one Damerau edit from ``word`` (letters only)."""
    letters = string.ascii_lowercase
    for i in range(len(word) + 1):
        head, tail = word[:i], word[i:]
        if tail:
            yield head + tail[1:]
            for c in letters:
                yield head + c + tail[1:]
        if len(tail) > 1:
            yield head + tail[1] + tail[0] + tail[2:]
        for c in letters:
            yield head + c + tail
