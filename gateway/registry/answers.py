"""The manifest blocks that say how an adapter answers and how far to trust it.

``answer``: the decision token of each label (absent: a legacy adapter that writes the
whole JSON object). ``calibration``: the temperature fitted on validation (absent: serve
uncalibrated probabilities, never fail). ``escalation``: the adapter's default threshold
and escalation labels. ``lexicon``: the training texts' words, to undo typos and casing.
``schema.json``: a structured adapter's answer schema, its default constraint.
Training writes them (``gateway.training``); a block that is present but malformed makes
the version invalid, so nothing is served half-read.
"""

from __future__ import annotations

import math
from typing import Any

from gateway.calibration import EscalationPolicy
from gateway.common.lexicon import LEXICON_FORMAT, LEXICON_VERSION, Lexicon
from gateway.common.prompts import DecisionToken
from gateway.errors import AdapterInvalid

ANSWER_FORMAT, ANSWER_VERSION = "decision_token", 1


def read_answer(
    manifest: dict[str, Any], labels: tuple[str, ...] | None, where: str
) -> tuple[DecisionToken, ...] | None:
    """One decision token per label, in label order, with distinct ids."""
    block = manifest.get("answer")
    if block is None:
        return None
    if not isinstance(block, dict) or (block.get("format"), block.get("version")) != (
        ANSWER_FORMAT,
        ANSWER_VERSION,
    ):
        raise AdapterInvalid(
            f"{where}: manifest answer must have format {ANSWER_FORMAT!r} and version "
            f"{ANSWER_VERSION} (this gateway reads no other)"
        )
    if not labels:
        raise AdapterInvalid(f"{where}: manifest has an answer block but no labels")
    entries = block.get("tokens")
    if not isinstance(entries, list) or len(entries) != len(labels):
        raise AdapterInvalid(f"{where}: manifest answer.tokens must list one token per label")
    tokens = []
    for label, entry in zip(labels, entries, strict=True):
        if not (
            isinstance(entry, dict)
            and entry.get("label") == label
            and isinstance(entry.get("text"), str)
            and _is_index(entry.get("id"))
        ):
            raise AdapterInvalid(
                f"{where}: manifest answer.tokens must be {{label, text, id}} in label order "
                f"(at label {label!r})"
            )
        tokens.append(DecisionToken(label, entry["text"], entry["id"]))
    if len({token.token_id for token in tokens}) != len(tokens):
        raise AdapterInvalid(f"{where}: manifest answer.tokens repeat a token id")
    return tuple(tokens)


def read_temperature(manifest: dict[str, Any], where: str) -> float | None:
    block = manifest.get("calibration")
    if block is None:
        return None
    temperature = block.get("temperature") if isinstance(block, dict) else None
    if (
        not isinstance(block, dict)
        or block.get("method") != "temperature"
        or not _is_number(temperature)
        or not 0 < temperature < math.inf
    ):
        raise AdapterInvalid(
            f"{where}: manifest calibration must be method 'temperature' with a positive "
            "finite temperature"
        )
    return float(temperature)


def read_escalation(
    manifest: dict[str, Any], labels: tuple[str, ...] | None, where: str
) -> EscalationPolicy | None:
    block = manifest.get("escalation")
    if block is None:
        return None
    threshold = block.get("threshold") if isinstance(block, dict) else None
    names = block.get("labels", []) if isinstance(block, dict) else None
    if not _is_number(threshold) or not 0 <= threshold <= 1:
        raise AdapterInvalid(f"{where}: manifest escalation.threshold must be in [0, 1]")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise AdapterInvalid(f"{where}: manifest escalation.labels must be a list of strings")
    unknown = sorted(set(names) - set(labels or ()))
    if unknown:
        raise AdapterInvalid(f"{where}: manifest escalation.labels {unknown} are not its labels")
    return EscalationPolicy(float(threshold), frozenset(names))


def read_lexicon(manifest: dict[str, Any], where: str) -> Lexicon | None:
    """The training texts' words and counts (absent: the input is read as sent)."""
    block = manifest.get("lexicon")
    if block is None:
        return None
    words = block.get("words") if isinstance(block, dict) else None
    if (
        not isinstance(block, dict)
        or (block.get("format"), block.get("version")) != (LEXICON_FORMAT, LEXICON_VERSION)
        or not isinstance(block.get("capitalize_first"), bool)
        or not isinstance(words, dict)
        or not all(
            isinstance(w, str) and w.isascii() and w.isalpha() and _is_index(c) and c > 0
            for w, c in words.items()
        )
    ):
        raise AdapterInvalid(
            f"{where}: manifest lexicon must be format {LEXICON_FORMAT!r} version "
            f"{LEXICON_VERSION} with capitalize_first and words {{letters: count > 0}}"
        )
    return Lexicon(words, block["capitalize_first"])


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_answer_schema(manifest: dict[str, Any], where: str) -> dict[str, Any] | None:
    """A structured adapter's answer schema: ``schema.json`` with a ``schema.name`` (the
    gateway checks it like any schema when a request first uses it)."""
    block = manifest.get("schema")
    if not isinstance(block, dict) or block.get("json") is None:
        return None
    schema, name = block["json"], block.get("name")
    if not isinstance(schema, dict) or not isinstance(name, str) or not name:
        raise AdapterInvalid(f"{where}: manifest schema.json must be an object, with a name")
    return schema
