"""A classification's confidence, read off the engine's token log-probabilities.

Two answer formats. Decision tokens: every label's token logprob at the one generated
position; ``gateway.calibration.label_probs`` renormalises them over the label set.
Legacy JSON: the grammar already renormalised each step over what it allows, so the
probability of the chosen label is the product of the sampled tokens' probabilities
until the label is the only one left; the tokens after that are forced.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence

from gateway.common.prompts import DecisionToken
from gateway.engine.types import TokenLogprobs

_INTENT_VALUE = re.compile(r'"intent"\s*:\s*"')


class MissingLogprobs(ValueError):
    """The engine's answer lacks a log-probability the computation needs."""


def decision_logprobs(
    tokens: Sequence[DecisionToken], positions: Sequence[TokenLogprobs]
) -> tuple[float, ...]:
    """Each label's raw logprob at the answer's first position, in label order."""
    if not positions:
        raise MissingLogprobs("the engine returned no log-probabilities")
    found = positions[0].logprobs
    missing = [token.label for token in tokens if token.token_id not in found]
    if missing:
        raise MissingLogprobs(f"no log-probability for the tokens of {missing[:3]}")
    return tuple(found[token.token_id] for token in tokens)


def ranked(labels: Sequence[str], probabilities: Sequence[float]) -> list[tuple[str, float]]:
    """Labels by probability, highest first; ties keep label order."""
    order = sorted(range(len(labels)), key=lambda i: (-probabilities[i], i))
    return [(labels[i], probabilities[i]) for i in order]


def legacy_confidence(
    labels: Sequence[str], label: str, positions: Sequence[TokenLogprobs]
) -> float:
    """P(label) under the constrained sampler: the product of the sampled tokens'
    probabilities over the characters of the intent value that tell ``label`` apart."""
    text = "".join(position.text for position in positions)
    match = _INTENT_VALUE.search(text)
    if match is None:
        raise MissingLogprobs("the generated tokens do not spell an intent value")
    start = match.end()
    for ensure_ascii in (False, True):  # JSON may spell a non-ASCII label either way
        spellings = [json.dumps(name, ensure_ascii=ensure_ascii)[1:] for name in labels]
        spelled = spellings[labels.index(label)]  # the value and its closing quote
        if text.startswith(spelled, start):
            break
    else:
        raise MissingLogprobs(f"the generated tokens do not spell the label {label!r}")
    end = start + _unique_after(spelled, spellings)
    total, offset = 0.0, 0
    for position in positions:
        begins, offset = offset, offset + len(position.text)
        if offset > start and begins < end:
            total += position.logprobs[position.token_id]
    return math.exp(total)


def _unique_after(spelled: str, spellings: Sequence[str]) -> int:
    """Characters of ``spelled`` after which no other spelling is still possible."""
    for length in range(1, len(spelled) + 1):
        prefix = spelled[:length]
        if sum(other.startswith(prefix) for other in spellings) == 1:
            return length
    return len(spelled)
