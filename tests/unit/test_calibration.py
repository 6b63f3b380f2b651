"""Label probabilities, temperature fitting, threshold choice and the escalation rule."""

from __future__ import annotations

import math
import random

import pytest

from gateway.calibration import (
    EscalationPolicy,
    choose_threshold,
    coverage_curve,
    fit_temperature,
    label_probs,
)


def test_probabilities_are_a_softmax_over_the_labels_and_sum_to_one() -> None:
    rng = random.Random(7)
    for temperature in (0.3, 1.0, 2.5):
        logprobs = [rng.uniform(-30, -0.01) for _ in range(77)]
        probs = label_probs(logprobs, temperature)
        assert abs(math.fsum(probs) - 1) < 1e-9
        assert probs.index(max(probs)) == logprobs.index(max(logprobs))
    # The vocabulary normaliser cancels: shifting every logprob changes nothing.
    assert label_probs([-1.0, -2.0]) == pytest.approx(label_probs([-11.0, -12.0]), abs=1e-12)
    assert label_probs([-1.0, -2.0]) == pytest.approx([1 / (1 + math.e**-1), 1 / (1 + math.e)])
    assert label_probs([0.0, -math.inf]) == [1.0, 0.0]


def test_a_higher_temperature_flattens() -> None:
    sharp, flat = label_probs([-0.1, -3.0], 0.5), label_probs([-0.1, -3.0], 4.0)
    assert sharp[0] > label_probs([-0.1, -3.0])[0] > flat[0] > 0.5


@pytest.mark.parametrize(
    ("logprobs", "temperature"),
    [([], 1.0), ([-1.0, math.nan], 1.0), ([-math.inf, -math.inf], 1.0), ([-1.0], 0.0),
     ([-1.0, math.inf], 1.0)],
)  # fmt: skip
def test_probabilities_refuse_what_is_not_a_distribution(
    logprobs: list[float], temperature: float
) -> None:
    with pytest.raises(ValueError):
        label_probs(logprobs, temperature)


def _synthetic(t0: float, n: int, labels: int, seed: int) -> tuple[list[list[float]], list[int]]:
    """Logits z whose labels are drawn from softmax(z / t0): the true temperature is t0."""
    rng = random.Random(seed)
    rows, gold = [], []
    for _ in range(n):
        row = [rng.gauss(0, 3) for _ in range(labels)]
        gold.append(rng.choices(range(labels), weights=label_probs(row, t0))[0])
        rows.append(row)
    return rows, gold


@pytest.mark.parametrize("t0", [0.5, 1.0, 2.0])
def test_fitting_recovers_a_known_temperature(t0: float) -> None:
    rows, gold = _synthetic(t0, n=5000, labels=8, seed=11)
    assert fit_temperature(rows, gold) == pytest.approx(t0, rel=0.05)


def test_fitting_clamps_to_the_searched_range() -> None:
    # Always right by a wide margin: the NLL keeps falling as T shrinks.
    assert fit_temperature([[0.0, -50.0]] * 10, [0] * 10) == pytest.approx(math.exp(-3))


def test_fitting_refuses_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="one gold index per row"):
        fit_temperature([[0.0, -1.0]], [0, 1])
    with pytest.raises(ValueError, match="outside a row of 2"):
        fit_temperature([[0.0, -1.0]], [2])


CONFIDENCES = [0.99, 0.95, 0.95, 0.9, 0.8, 0.6, 0.5]
CORRECT = [True, True, False, True, True, False, True]


def test_the_coverage_curve_keeps_ties_together() -> None:
    assert coverage_curve(CONFIDENCES, CORRECT) == [
        (0.99, 1 / 7, 1.0), (0.95, 3 / 7, 2 / 3), (0.9, 4 / 7, 3 / 4), (0.8, 5 / 7, 4 / 5),
        (0.6, 6 / 7, 4 / 6), (0.5, 1.0, 5 / 7),
    ]  # fmt: skip


def test_the_threshold_is_the_longest_prefix_at_the_target_accuracy() -> None:
    assert choose_threshold(CONFIDENCES, CORRECT, 0.8) == 0.8
    assert choose_threshold(CONFIDENCES, CORRECT, 0.7) == 0.5
    assert choose_threshold(CONFIDENCES, CORRECT, 1.0) == 0.99
    # A tie is never split: 0.95 holds one right and one wrong answer.
    assert choose_threshold([0.9, 0.9], [True, False], 0.9) == 1.0


def test_no_qualifying_prefix_escalates_everything() -> None:
    assert choose_threshold([0.9, 0.4], [False, True], 0.95) == 1.0
    with pytest.raises(ValueError, match="target_accuracy"):
        choose_threshold([0.9], [True], 1.5)
    with pytest.raises(ValueError, match="at least one item"):
        choose_threshold([], [], 0.9)


def test_the_escalation_rule() -> None:
    policy = EscalationPolicy(threshold=0.7, labels=frozenset({"lost_card"}))
    assert policy.reason("billing", 0.69) == "low_confidence"
    assert policy.reason("billing", 0.7) is None
    assert policy.reason("lost_card", 0.99) == "escalation_label"
    assert policy.reason("lost_card", 0.1) == "escalation_label"
    assert EscalationPolicy().reason("anything", 0.0) is None
    with pytest.raises(ValueError, match="threshold"):
        EscalationPolicy(threshold=1.2)
