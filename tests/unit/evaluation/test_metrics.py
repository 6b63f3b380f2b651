"""Scoring one split of served answers: failures count against the adapter."""

from __future__ import annotations

import pytest

from gateway.calibration import EscalationPolicy, label_probs
from gateway.evaluation.metrics import Item, recalibrated, score

LABELS = ("a", "b")


def _item(label: str, p_a: float, reason: str | None = None) -> Item:
    probs = (p_a, 1 - p_a)
    return Item(label, max(probs), probs, None, reason)


def test_failures_count_as_wrong_and_escalated() -> None:
    items = [
        _item("a", 0.9),
        Item(None, None, None, None, None, "output_truncated"),
        _item("b", 0.2),
        _item("a", 0.6, "low_confidence"),
    ]
    result = score(["a", "a", "b", "b"], items, LABELS)
    assert result["items"] == 4 and result["accuracy"] == 0.5
    assert result["schema_valid_rate"] == 0.75
    assert result["errors"] == {"output_truncated": 1}
    assert result["top_confusions"] == [{"gold": "b", "predicted": "a", "count": 1}]
    assert result["escalation_rate"] == 0.5  # the failure and the low-confidence answer
    assert result["auto_accuracy"] == 1.0  # both answers handled without a person are right
    # answered: confidences 0.9 (right), 0.8 (right), 0.6 (wrong)
    assert result["top_label_brier"] == round((0.01 + 0.04 + 0.36) / 3, 4)
    assert result["brier"] == round((2 * 0.01 + 2 * 0.04 + 2 * 0.36) / 3, 4)
    assert result["auroc"] == 1.0 and result["mean_confidence"] == round(2.3 / 3, 4)
    assert result["ece"] == round((0.1 + 0.2 + 0.6) / 3, 4)  # one item per bin
    assert "human_agent_accuracy" not in result


def test_a_legacy_adapter_has_no_multiclass_brier() -> None:
    result = score(["a"], [Item("a", 0.7, None, None, None)], LABELS)
    assert result["brier"] is None and result["top_label_brier"] == round(0.09, 4)
    assert result["auroc"] is None  # every answer right: nothing to separate


def test_the_human_flag_is_scored_only_when_the_data_sets_it() -> None:
    items = [_item("a", 0.9, "escalation_label"), _item("a", 0.9)]
    assert score(["a", "a"], items, LABELS, [True, True])["human_agent_accuracy"] == 0.5
    assert "human_agent_accuracy" not in score(["a", "a"], items, LABELS, [False, None])


def test_recalibrating_applies_the_temperature_and_the_policy() -> None:
    raw = (-0.4, -1.2)
    served = Item("a", label_probs(raw)[0], tuple(label_probs(raw)), raw, None)
    policy = EscalationPolicy(threshold=0.6, labels=frozenset())
    again = recalibrated(served, LABELS, 4.0, policy)
    assert again.probabilities == pytest.approx(label_probs(raw, 4.0))
    assert again.predicted == "a" and again.confidence == pytest.approx(label_probs(raw, 4.0)[0])
    assert again.escalation_reason == "low_confidence"  # 0.55 at T=4
    assert recalibrated(Item("a", 0.7, None, None, None), LABELS, 4.0, policy).confidence == 0.7
    assert again.top(LABELS, 1) == [("a", round(again.confidence, 6))]
