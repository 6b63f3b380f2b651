"""Classification scores shared by adapter evaluation and the consistency benchmark."""

from __future__ import annotations


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
