"""The manifest's ``calibration`` and ``escalation`` blocks, fitted on validation logits.

Training fits them on the HF model's validation logits (``source: "training"``) so every
decision-token adapter has them; evaluation refits them on the label log-probabilities
the serving engine returns (``source: "serving"``: bf16, maybe quantized), which is what
requests will see. Both go through this one function.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from gateway.calibration import EscalationPolicy, choose_threshold, fit_temperature, label_probs
from gateway.scoring import ece
from gateway.training.data import Example, human_flag

FLAGGED_SHARE = 0.5  # a label this often flagged for a person escalates by default


def predictions(probabilities: Sequence[Sequence[float]]) -> list[int]:
    """The argmax of each row; ties go to the earlier label, as serving breaks them."""
    return [max(range(len(row)), key=lambda k: (row[k], -k)) for row in probabilities]


def _nll(probabilities: Sequence[Sequence[float]], gold: Sequence[int]) -> float:
    return -sum(
        math.log(max(row[g], 1e-300)) for row, g in zip(probabilities, gold, strict=True)
    ) / len(gold)


def _ece(probabilities: Sequence[Sequence[float]], gold: Sequence[int]) -> float:
    predicted = predictions(probabilities)
    confidences = [row[p] for row, p in zip(probabilities, predicted, strict=True)]
    return ece(confidences, [p == g for p, g in zip(predicted, gold, strict=True)])


def escalation_labels(
    configured: Sequence[str], train: Sequence[Example], labels: Sequence[str]
) -> list[str]:
    """The configured labels and those whose training rows are mostly flagged for a
    person (data that labels ``requires_human_agent``), in label order."""
    flagged: dict[str, list[bool]] = {}
    for example in train:
        flag = human_flag(example)
        if example.label is not None and flag is not None:
            flagged.setdefault(example.label, []).append(flag)
    chosen = set(configured) | {
        label for label, flags in flagged.items() if sum(flags) >= FLAGGED_SHARE * len(flags)
    }
    return [label for label in labels if label in chosen]


def fit_blocks(
    logprobs: Sequence[Sequence[float]],
    gold: Sequence[int],
    labels: Sequence[str],
    target_accuracy: float,
    escalate: Sequence[str],
    source: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Temperature (min validation NLL), then the lowest threshold whose automatically
    handled validation items (neither below it nor of an ``escalate`` label) reach
    ``target_accuracy`` under that temperature."""
    temperature = fit_temperature(logprobs, gold)
    before = [label_probs(row) for row in logprobs]
    after = [label_probs(row, temperature) for row in logprobs]
    calibration = {
        "method": "temperature",
        "temperature": temperature,
        "fit_on": "validation",
        "items": len(gold),
        "source": source,
        "nll_before": round(_nll(before, gold), 4),
        "nll_after": round(_nll(after, gold), 4),
        "ece_before": round(_ece(before, gold), 4),
        "ece_after": round(_ece(after, gold), 4),
    }
    predicted = predictions(after)
    # (label, confidence, correct) of the items the label list does not escalate anyway
    rest = [
        (labels[p], row[p], p == g)
        for row, p, g in zip(after, predicted, gold, strict=True)
        if labels[p] not in escalate
    ]
    threshold = (
        choose_threshold([c for _, c, _ in rest], [ok for _, _, ok in rest], target_accuracy)
        if rest
        else 1.0
    )
    policy = EscalationPolicy(threshold, frozenset(escalate))
    auto = [ok for label, c, ok in rest if policy.reason(label, c) is None]
    escalation = {
        "threshold": threshold,
        "labels": list(escalate),
        "target_accuracy": target_accuracy,
        "val_coverage": round(len(auto) / len(gold), 4),
        "val_accuracy_auto": round(sum(auto) / len(auto), 4) if auto else None,
    }
    return calibration, escalation
