"""Classification scores shared by adapter evaluation and the consistency benchmark.

Confidence metrics take, per item, the confidence of the returned label and whether
that label was right (``correct``); the multiclass Brier score needs every label's
probability. ECE and the reliability diagram use ``ECE_BINS`` equal-width bins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ECE_BINS = 15


def macro_f1(gold: list[str], predicted: list[str | None]) -> float:
    """Mean F1 over the gold labels; an invalid answer (None) counts as wrong for its item."""
    scores = []
    for label in sorted(set(gold)):
        tp = sum(g == label and p == label for g, p in zip(gold, predicted, strict=True))
        fp = sum(g != label and p == label for g, p in zip(gold, predicted, strict=True))
        fn = sum(g == label and p != label for g, p in zip(gold, predicted, strict=True))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(scores) / len(scores) if scores else 0.0


@dataclass(frozen=True)
class Bin:
    lower: float
    upper: float
    count: int
    confidence: float | None  # mean confidence of its items; None when empty
    accuracy: float | None


def reliability_bins(
    confidences: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS
) -> list[Bin]:
    """Item i goes to bin min(floor(bins * c_i), bins - 1): a confidence of 1 joins the top bin."""
    members: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for c, ok in zip(confidences, correct, strict=True):
        members[min(int(bins * c), bins - 1)].append((c, ok))
    return [
        Bin(
            b / bins,
            (b + 1) / bins,
            len(items),
            sum(c for c, _ in items) / len(items) if items else None,
            sum(ok for _, ok in items) / len(items) if items else None,
        )
        for b, items in enumerate(members)
    ]


def ece(confidences: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS) -> float:
    """Expected calibration error: sum over bins of |B|/n * |accuracy(B) - confidence(B)|."""
    n = len(confidences)
    if not n:
        raise ValueError("ECE of no items")
    return sum(
        b.count / n * abs(b.accuracy - b.confidence)
        for b in reliability_bins(confidences, correct, bins)
        if b.accuracy is not None and b.confidence is not None
    )


def brier(probabilities: Sequence[Sequence[float]], gold: Sequence[int]) -> float:
    """Multiclass Brier score: mean over items of sum_k (p_k - [k is gold])^2; 0 to 2."""
    if not gold:
        raise ValueError("Brier score of no items")
    return sum(
        sum((p - (k == g)) ** 2 for k, p in enumerate(row))
        for row, g in zip(probabilities, gold, strict=True)
    ) / len(gold)


def top_label_brier(confidences: Sequence[float], correct: Sequence[bool]) -> float:
    """Mean of (confidence - correct)^2: the Brier score of the returned label alone."""
    if not confidences:
        raise ValueError("Brier score of no items")
    return sum((c - ok) ** 2 for c, ok in zip(confidences, correct, strict=True)) / len(correct)


def auroc(confidences: Sequence[float], correct: Sequence[bool]) -> float | None:
    """How well confidence ranks right answers above wrong ones (Mann-Whitney U over
    n+ * n-, tied confidences sharing their average rank). 0.5 is chance, as for any
    constant confidence; None when every answer is right, or every one wrong."""
    positives = sum(correct)
    negatives = len(correct) - positives
    if not positives or not negatives:
        return None
    order = sorted(range(len(confidences)), key=lambda i: confidences[i])
    ranks = [0.0] * len(order)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and confidences[order[end + 1]] == confidences[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    rank_sum = sum(r for r, ok in zip(ranks, correct, strict=True) if ok)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
