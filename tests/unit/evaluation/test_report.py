"""The adapter report: every split, calibration and escalation, both answer formats."""

from __future__ import annotations

from gateway.evaluation.metrics import Item, score
from gateway.evaluation.report import render_report
from tests.unit.evaluation.manifests import manifest

LABELS = ["a", "b"]
ANSWER = {"format": "decision_token", "version": 1, "tokens": []}
CALIBRATION = {
    "method": "temperature", "temperature": 1.5, "fit_on": "validation", "items": 2,
    "source": "serving", "nll_before": 0.9, "nll_after": 0.7, "ece_before": 0.2,
    "ece_after": 0.05,
}  # fmt: skip


def _items(*confidences: float) -> list[Item]:
    return [Item("a", c, (c, 1 - c), None, None) for c in confidences]


def test_report_lists_every_split_with_calibration_and_escalation() -> None:
    evaluation = {
        "backend": "xgrammar",
        "validation": score(["a", "b"], _items(0.9, 0.6), LABELS),
        "test": score(["a"], _items(0.8), LABELS, [True]),
    }
    escalation = {"threshold": 0.75, "labels": ["b"], "target_accuracy": 0.95,
                  "val_coverage": 0.5, "val_accuracy_auto": 1.0}  # fmt: skip
    report = render_report(
        manifest(LABELS, ANSWER, calibration=CALIBRATION, escalation=escalation,
                 evaluation=evaluation),
        ["reliability.png", "coverage.png"],
    )  # fmt: skip
    # ECE (0.1 + 0.6) / 2; Brier (0.02 + 0.72) / 2; the right answer is the surer one
    assert (
        "| validation | 2 | 50.0% | 0.333 | 0.350 | 0.370 | 1.000 | 0.0% | 50.0% | 100.0% | n/a |"
        in report
    )
    assert "| test | 1 | 100.0% |" in report and "b → a: 1" in report
    assert "Temperature 1.500, fitted on 2 validation items (serving path)" in report
    assert "Escalation threshold 0.7500" in report and "Labels that always escalate: b." in report
    assert "![reliability](reliability.png)" in report
    assert "10.0 examples/s" in report and "(early stopping)" in report


def test_a_legacy_adapter_is_reported_as_uncalibrated() -> None:
    evaluation = {"test": score(["a"], [Item("a", 0.7, None, None, None)], LABELS)}
    report = render_report(manifest(LABELS, evaluation=evaluation))
    assert "Answer: JSON (legacy)" in report and "uncalibrated" in report
    assert "| test | 1 | 100.0% | 1.000 | 0.300 | n/a | n/a |" in report


def test_an_unreachable_target_says_everything_escalates() -> None:
    escalation = {"threshold": 1.0, "labels": [], "target_accuracy": 0.95,
                  "val_coverage": 0.0, "val_accuracy_auto": None}  # fmt: skip
    report = render_report(manifest(LABELS, ANSWER, escalation=escalation))
    assert "No threshold reaches 95% accuracy on validation: every message escalates" in report
