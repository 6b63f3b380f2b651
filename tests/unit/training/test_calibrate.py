"""Manifest calibration and escalation blocks from validation logits."""

from __future__ import annotations

import random

import pytest

from gateway.calibration import EscalationPolicy, label_probs
from gateway.training.calibrate import escalation_labels, fit_blocks, predictions
from gateway.training.data import Example

LABELS = ("a", "b", "c")


def _synthetic(n: int, temperature: float, seed: int = 0) -> tuple[list[list[float]], list[int]]:
    """Logits whose gold labels are drawn from softmax(z / temperature)."""
    rng = random.Random(seed)
    rows, gold = [], []
    for _ in range(n):
        z = [rng.gauss(0, 3) for _ in LABELS]
        rows.append(z)
        gold.append(rng.choices(range(len(LABELS)), weights=label_probs(z, temperature))[0])
    return rows, gold


def test_the_blocks_recover_the_temperature_and_meet_the_target() -> None:
    rows, gold = _synthetic(3000, temperature=2.0)
    calibration, escalation = fit_blocks(rows, gold, LABELS, 0.9, ["c"], "serving")
    assert calibration["temperature"] == pytest.approx(2.0, rel=0.1)
    assert (calibration["method"], calibration["source"], calibration["items"]) == (
        "temperature", "serving", 3000,
    )  # fmt: skip
    assert calibration["nll_after"] < calibration["nll_before"]
    assert calibration["ece_after"] < calibration["ece_before"]

    # the recorded coverage and accuracy are what the policy does on these items
    policy = EscalationPolicy(escalation["threshold"], frozenset(escalation["labels"]))
    probs = [label_probs(row, calibration["temperature"]) for row in rows]
    auto = [
        p == g
        for row, p, g in zip(probs, predictions(probs), gold, strict=True)
        if policy.reason(LABELS[p], row[p]) is None
    ]
    assert escalation["val_coverage"] == round(len(auto) / len(rows), 4) > 0
    assert escalation["val_accuracy_auto"] == round(sum(auto) / len(auto), 4) >= 0.9
    assert escalation["labels"] == ["c"] and escalation["target_accuracy"] == 0.9


def test_an_unreachable_target_escalates_everything() -> None:
    rows, gold = [[0.0, 0.0, 0.0]] * 4, [0, 1, 2, 0]  # a coin toss is never 95% right
    _, escalation = fit_blocks(rows, gold, LABELS, 0.95, [], "training")
    assert escalation["threshold"] == 1.0
    assert escalation["val_coverage"] == 0 and escalation["val_accuracy_auto"] is None


def test_ties_go_to_the_earlier_label() -> None:
    assert predictions([[0.2, 0.4, 0.4], [0.5, 0.5, 0.0], [0.1, 0.2, 0.7]]) == [1, 0, 2]


def test_mostly_flagged_labels_escalate_by_default() -> None:
    def row(label: str, flag: bool) -> Example:
        answer = (
            f'{{"intent":"{label}","confidence":0.9,"requires_human_agent":{str(flag).lower()}}}'
        )
        return Example("text", answer, label)

    train = [row("b", True), row("b", False), row("a", True), row("a", False), row("a", False)]
    assert escalation_labels([], train, LABELS) == ["b"]  # half of b, a third of a
    assert escalation_labels(["c"], train, LABELS) == ["b", "c"]  # in label order
    assert escalation_labels([], [Example("t", "not json", "a")], LABELS) == []
