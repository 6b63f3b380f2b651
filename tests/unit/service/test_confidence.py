"""Reading a label's probability off token log-probabilities, both answer formats."""

from __future__ import annotations

import math

import pytest

from gateway.common.prompts import DecisionToken
from gateway.engine.types import TokenLogprobs
from gateway.service.confidence import (
    MissingLogprobs,
    decision_logprobs,
    legacy_confidence,
    ranked,
)

SHARED = ["card_arrival", "card_linking", "cash_withdrawal"]


def positions(text: str, logprobs: list[float]) -> list[TokenLogprobs]:
    """``text`` in 3-character tokens with these sampled log-probabilities."""
    pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
    pairs = zip(pieces, logprobs[: len(pieces)], strict=True)
    return [TokenLogprobs(i, piece, {i: lp}) for i, (piece, lp) in enumerate(pairs)]


def test_only_the_tokens_that_tell_the_label_apart_count() -> None:
    text = '{"intent":"card_linking","confidence":1,"requires_human_agent":false}'
    logprobs = [-0.1 * (i + 1) for i in range(30)]
    tokens = positions(text, logprobs)
    # The value starts at character 11; "card_l" is the first prefix no other label has,
    # so characters 11..16 decide: the tokens ':"c', 'ard' and '_li' (3, 4 and 5).
    assert legacy_confidence(SHARED, "card_linking", tokens) == pytest.approx(
        math.exp(sum(logprobs[3:6]))
    )
    # Against labels that differ at the first character, only ':"c' counts.
    assert legacy_confidence(["card_linking", "other"], "card_linking", tokens) == pytest.approx(
        math.exp(logprobs[3])
    )


def test_a_label_that_prefixes_another_is_unique_at_its_closing_quote() -> None:
    text = '{"intent":"card","confidence":1,"requires_human_agent":false}'
    logprobs = [-0.1 * (i + 1) for i in range(30)]
    # "card" and "card_x" part only at the closing quote: character 15, in token 5.
    found = legacy_confidence(["card", "card_x"], "card", positions(text, logprobs))
    assert found == pytest.approx(math.exp(sum(logprobs[3:6])))


def test_whitespace_and_escaped_spellings_are_read() -> None:
    spaced = '{ "intent" : "caf\\u00e9", "confidence": 1, "requires_human_agent": false}'
    tokens = [TokenLogprobs(i, c, {i: -0.01}) for i, c in enumerate(spaced)]
    found = legacy_confidence(["café", "cab"], "café", tokens)
    assert found == pytest.approx(math.exp(-0.01 * 3))  # 'c', 'a', then 'f' decides


def test_an_answer_without_the_label_is_refused() -> None:
    tokens = positions('{"confidence":1}', [0.0] * 6)
    with pytest.raises(MissingLogprobs, match="intent value"):
        legacy_confidence(SHARED, "card_linking", tokens)
    tokens = positions('{"intent":"card_arrival"}', [0.0] * 9)
    with pytest.raises(MissingLogprobs, match="do not spell the label"):
        legacy_confidence(SHARED, "card_linking", tokens)


def test_decision_logprobs_are_read_in_label_order() -> None:
    tokens = [DecisionToken("a", "A", 7), DecisionToken("b", "B", 3)]
    first = TokenLogprobs(99, "x", {99: -0.1, 3: -2.0, 7: -1.0})
    assert decision_logprobs(tokens, [first]) == (-1.0, -2.0)
    with pytest.raises(MissingLogprobs, match="no log-probabilities"):
        decision_logprobs(tokens, [])
    with pytest.raises(MissingLogprobs, match="'b'"):
        decision_logprobs(tokens, [TokenLogprobs(7, "A", {7: -0.1})])


def test_ranking_is_by_probability_then_label_order() -> None:
    assert ranked(["a", "b", "c"], [0.25, 0.5, 0.25]) == [("b", 0.5), ("a", 0.25), ("c", 0.25)]
