"""Label probabilities, temperature scaling and the escalation rule.

Pure Python so training (fits T on HF logits), the service (applies T per request) and
evaluation (fits T and the threshold on the serving path) share one definition.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Temperature is searched as log T in this range: T from 0.05 to 20.
_LOG_T_RANGE = (-3.0, 3.0)
_GOLDEN = (math.sqrt(5) - 1) / 2
_LOG_T_TOLERANCE = 1e-7


def label_probs(logprobs: Sequence[float], temperature: float = 1.0) -> list[float]:
    """softmax(logprobs / T) over the label set; sums to 1 for any T.

    The vocabulary's log-normaliser is the same for every label and cancels, so these are
    the model's probabilities renormalised over the labels. A -inf logprob is probability 0.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if not logprobs or any(math.isnan(lp) or lp == math.inf for lp in logprobs):
        raise ValueError("logprobs must be a non-empty sequence of numbers below +inf")
    top = max(logprobs)
    if top == -math.inf:
        raise ValueError("every label has probability 0")
    weights = [math.exp((lp - top) / temperature) for lp in logprobs]
    total = math.fsum(weights)
    return [weight / total for weight in weights]


def _mean_nll(logprobs: Sequence[Sequence[float]], gold: Sequence[int], log_t: float) -> float:
    inverse = math.exp(-log_t)
    total = 0.0
    for row, answer in zip(logprobs, gold, strict=True):
        top = max(row)
        scaled = [(lp - top) * inverse for lp in row]
        total += math.log(math.fsum(math.exp(x) for x in scaled)) - scaled[answer]
    return total / len(gold)


def fit_temperature(logprobs: Sequence[Sequence[float]], gold: Sequence[int]) -> float:
    """The T minimising the mean NLL of ``label_probs(row, T)`` at the gold label.

    NLL is convex in 1/T, hence unimodal in log T: a golden-section search over log T in
    [-3, 3] finds the minimum (clamped to the range's ends) without numpy.
    """
    if not gold or len(logprobs) != len(gold):
        raise ValueError("need one gold index per row, and at least one row")
    for row, answer in zip(logprobs, gold, strict=True):
        if not 0 <= answer < len(row):
            raise ValueError(f"gold index {answer} is outside a row of {len(row)} labels")
        label_probs(row)  # the same checks on every row
    low, high = _LOG_T_RANGE
    left, right = high - _GOLDEN * (high - low), low + _GOLDEN * (high - low)
    nll_left, nll_right = _mean_nll(logprobs, gold, left), _mean_nll(logprobs, gold, right)
    while high - low > _LOG_T_TOLERANCE:
        if nll_left <= nll_right:
            high, right, nll_right = right, left, nll_left
            left = high - _GOLDEN * (high - low)
            nll_left = _mean_nll(logprobs, gold, left)
        else:
            low, left, nll_left = left, right, nll_right
            right = low + _GOLDEN * (high - low)
            nll_right = _mean_nll(logprobs, gold, right)
    return math.exp((low + high) / 2)


def _by_confidence(
    confidences: Sequence[float], correct: Sequence[bool]
) -> list[tuple[float, bool]]:
    if not confidences or len(confidences) != len(correct):
        raise ValueError("need one correctness flag per confidence, and at least one item")
    return sorted(zip(confidences, correct, strict=True), key=lambda item: -item[0])


def coverage_curve(
    confidences: Sequence[float], correct: Sequence[bool]
) -> list[tuple[float, float, float]]:
    """(threshold, coverage, accuracy) at each distinct confidence, highest threshold first.

    Coverage is the share of items with confidence >= threshold (handled automatically);
    accuracy is measured on those items. Tied confidences enter together.
    """
    items = _by_confidence(confidences, correct)
    curve: list[tuple[float, float, float]] = []
    right = 0
    for index, (confidence, is_correct) in enumerate(items):
        right += is_correct
        if index + 1 == len(items) or items[index + 1][0] != confidence:
            count = index + 1
            curve.append((confidence, count / len(items), right / count))
    return curve


def choose_threshold(
    confidences: Sequence[float], correct: Sequence[bool], target_accuracy: float
) -> float:
    """The lowest threshold whose auto-handled items reach ``target_accuracy``.

    That is the longest run of most-confident items (ties kept together) whose accuracy is
    at least the target; 1.0 (escalate everything) when no run qualifies.
    """
    if not 0 <= target_accuracy <= 1:
        raise ValueError(f"target_accuracy must be in [0, 1], got {target_accuracy}")
    qualifying = [
        threshold
        for threshold, _, accuracy in coverage_curve(confidences, correct)
        if accuracy >= target_accuracy
    ]
    return min(qualifying) if qualifying else 1.0


@dataclass(frozen=True)
class EscalationPolicy:
    """When a person should take over: the label is in ``labels``, or the calibrated
    confidence is below ``threshold``. The default escalates nothing."""

    threshold: float = 0.0
    labels: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not 0 <= self.threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")

    def reason(self, label: str, confidence: float) -> str | None:
        """Why ``label`` at ``confidence`` escalates; the label list wins over confidence."""
        if label in self.labels:
            return "escalation_label"
        if confidence < self.threshold:
            return "low_confidence"
        return None
