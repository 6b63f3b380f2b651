"""One split's answers in, its numbers out: correctness, calibration and escalation.

A request that failed (an error code, no answer) counts as wrong and as escalated: a
router hands it to a person. Confidence metrics (ECE, Brier, AUROC) cover the answered
items, the ones that have a confidence.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from gateway.calibration import EscalationPolicy, label_probs
from gateway.scoring import auroc, brier, ece, macro_f1, top_label_brier
from gateway.training.calibrate import predictions


@dataclass(frozen=True)
class Item:
    """What ``ClassifyService`` answered for one held-out example."""

    predicted: str | None
    confidence: float | None
    probabilities: tuple[float, ...] | None  # label order; None: a legacy adapter
    label_logprobs: tuple[float, ...] | None
    escalation_reason: str | None
    error: str | None = None

    @property
    def escalated(self) -> bool:
        return self.error is not None or self.escalation_reason is not None

    def top(self, labels: Sequence[str], k: int) -> list[tuple[str, float]]:
        if self.probabilities is None:
            return [(self.predicted, self.confidence)] if self.predicted else []
        order = sorted(range(len(labels)), key=lambda i: (-self.probabilities[i], i))  # type: ignore[index]
        return [(labels[i], round(self.probabilities[i], 6)) for i in order[:k]]  # type: ignore[index]


def recalibrated(
    item: Item, labels: Sequence[str], temperature: float, policy: EscalationPolicy
) -> Item:
    """The answer serving gives under ``temperature`` and ``policy``: the same pure
    functions the classify service applies to the same raw log-probabilities."""
    if item.label_logprobs is None:
        return item
    probabilities = tuple(label_probs(item.label_logprobs, temperature))
    best = predictions([probabilities])[0]
    label, confidence = labels[best], probabilities[best]
    return replace(
        item,
        predicted=label,
        confidence=confidence,
        probabilities=probabilities,
        escalation_reason=policy.reason(label, confidence),
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def score(
    gold: Sequence[str],
    items: Sequence[Item],
    labels: Sequence[str],
    human_gold: Sequence[bool | None] | None = None,
) -> dict[str, Any]:
    """Accuracy, macro-F1, calibration (ECE in 15 bins, Brier, AUROC of confidence for
    right against wrong answers), escalation rate and accuracy on the rest; agreement of
    ``requires_human_agent`` with the data's flag when the data flags anything."""
    n = len(gold)
    predicted = [item.predicted for item in items]
    answered = [(g, item) for g, item in zip(gold, items, strict=True) if item.error is None]
    confidences = [item.confidence or 0.0 for _, item in answered]
    correct = [item.predicted == g for g, item in answered]
    full = [item.probabilities for _, item in answered]
    auto = [item.predicted == g for g, item in zip(gold, items, strict=True) if not item.escalated]
    result: dict[str, Any] = {
        "items": n,
        "accuracy": _rounded(sum(g == p for g, p in zip(gold, predicted, strict=True)) / n),
        "macro_f1": _rounded(macro_f1(list(gold), predicted)),
        "schema_valid_rate": _rounded(len(answered) / n),
        "errors": dict(Counter(item.error for item in items if item.error)),
        "ece": _rounded(ece(confidences, correct)) if answered else None,
        "brier": _rounded(brier(full, [labels.index(g) for g, _ in answered]))  # type: ignore[arg-type]
        if answered and all(p is not None for p in full)
        else None,
        "top_label_brier": _rounded(top_label_brier(confidences, correct)) if answered else None,
        "auroc": _rounded(auroc(confidences, correct)),
        "mean_confidence": _rounded(sum(confidences) / len(confidences)) if answered else None,
        "escalation_rate": _rounded(sum(item.escalated for item in items) / n),
        "auto_accuracy": _rounded(sum(auto) / len(auto)) if auto else None,
        "top_confusions": [
            {"gold": g, "predicted": p, "count": c}
            for (g, p), c in Counter(
                (g, p) for g, p in zip(gold, predicted, strict=True) if p is not None and g != p
            ).most_common(5)
        ],
    }
    flags = [
        (flag, item.escalated)
        for flag, item in zip(human_gold or [None] * n, items, strict=True)
        if flag is not None
    ]
    if any(flag for flag, _ in flags):  # all-false labels say nothing about the flag
        result["human_agent_accuracy"] = _rounded(sum(f == e for f, e in flags) / len(flags))
    return result
