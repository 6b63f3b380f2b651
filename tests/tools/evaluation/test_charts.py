"""The evaluation charts, drawn by the tools package from what ``gateway eval`` wrote."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.evaluation.metrics import Item
from gateway_tools.evaluation.charts import draw_adapter_charts, write_charts
from tests.unit.evaluation.manifests import manifest


def _items(*confidences: float) -> list[Item]:
    return [Item("a", c, (c, 1 - c), None, None) for c in confidences]


def test_charts_are_written_for_the_splits_with_answers(tmp_path: Path) -> None:
    gold = {"validation": ["a", "b", "a"], "test": ["a"]}
    answers = {
        "validation": _items(0.9, 0.7, 0.55),
        "test": [Item(None, None, None, None, None, "x")],
    }
    escalation = {"threshold": 0.6, "target_accuracy": 0.95}
    names = write_charts(gold, answers, escalation, tmp_path)
    assert names == ["reliability.png", "coverage.png"]
    for name in names:
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert write_charts({"test": ["a"]}, {"test": answers["test"]}, None, tmp_path) == []


def _prediction(split: str, gold: str, predicted: str | None, confidence: float | None) -> str:
    error = None if predicted else "output_invalid"
    row = {"split": split, "text": "t", "gold": gold, "predicted": predicted,
           "confidence": confidence, "top": [], "escalation_reason": None,
           "requires_human_agent": False, "error": error}  # fmt: skip
    return json.dumps(row) + "\n"


def test_an_evaluated_adapter_gets_its_charts_and_a_report_linking_them(tmp_path: Path) -> None:
    escalation = {"threshold": 0.6, "labels": [], "target_accuracy": 0.9}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest(["a", "b"], escalation=escalation)))
    (tmp_path / "report.md").write_text("# as gateway eval wrote it, without charts\n")
    (tmp_path / "eval_predictions.jsonl").write_text(
        _prediction("validation", "a", "a", 0.9)
        + _prediction("validation", "b", "a", 0.7)
        + _prediction("test", "b", None, None)  # a failed request: no point on the charts
        + _prediction("test", "a", "a", 0.8)
    )
    assert draw_adapter_charts(tmp_path) == ["reliability.png", "coverage.png"]
    assert (tmp_path / "coverage.png").read_bytes()[:4] == b"\x89PNG"
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# Adapter `demo/v1`")
    assert "![reliability](reliability.png)" in report and "![coverage](coverage.png)" in report
