"""Evaluation end to end through ``ClassifyService``, with the engine double answering
label log-probabilities: the serving-path fit, the manifest, the predictions and report."""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.calibration import label_probs
from gateway.config import Settings
from gateway.evaluation.metrics import Item
from gateway.evaluation.run import evaluate_adapter, refit
from gateway.fileio import write_json_atomic
from gateway.training.config import TrainConfig
from gateway.training.data import Example
from tests.adapter_factory import FAKE_BASE, make_peft_folder
from tests.fake_engine import FakeEngine
from tests.unit.evaluation.manifests import manifest

LABELS = ["card", "refund", "other"]  # distinct first letters: first-token decision tokens
ANSWER = {
    "format": "decision_token",
    "version": 1,
    "tokens": [{"label": label, "text": label[0], "id": ord(label[0])} for label in LABELS],
}


@dataclass
class Engine(FakeEngine):
    def shutdown(self) -> None:
        self.ready = False


def _rows(path: Path, count: int) -> Path:
    path.write_text(
        "text,category\n"
        + "".join(
            f"message number {i} about {LABELS[i % 3]},{LABELS[i % 3]}\n" for i in range(count)
        )
    )
    return path


def test_evaluation_fits_on_the_serving_path_and_scores_every_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    blocks = {"escalation": {"threshold": 0.0, "labels": ["refund"], "target_accuracy": 0.95,
                             "val_coverage": None, "val_accuracy_auto": None}}  # fmt: skip
    adapter = make_peft_folder(
        store / "demo" / "v1", labels=LABELS, extra=manifest(LABELS, ANSWER, **blocks)
    )
    monkeypatch.setattr("gateway.evaluation.run.default_engine", lambda s: (Engine(), FAKE_BASE))
    cfg = TrainConfig(
        name="demo", data=_rows(tmp_path / "train.csv", 30), test=_rows(tmp_path / "test.csv", 12),
        val_share=0.5, out_root=store, labels=LABELS, escalation_target_accuracy=0.5,
    )  # fmt: skip
    metrics = evaluate_adapter(adapter, cfg, Settings(registry_file=tmp_path / "r.json"))

    saved = json.loads((adapter / "manifest.json").read_text())
    assert saved["evaluation"] == metrics and {"validation", "test"} <= set(metrics)
    assert metrics["validation"]["items"] == 15 and metrics["test"]["items"] == 12
    calibration = saved["calibration"]
    assert (calibration["source"], calibration["items"]) == ("serving", 15)
    assert saved["escalation"]["labels"] == ["refund"]  # kept from training
    assert saved["escalation"]["target_accuracy"] == 0.5

    lines = (adapter / "eval_predictions.jsonl").read_text().splitlines()
    predictions = [json.loads(line) for line in lines]
    assert len(predictions) == 27
    for p in predictions:  # as served under the fitted temperature and threshold
        probabilities = [q for _, q in p["top"]]
        assert probabilities == sorted(probabilities, reverse=True) and len(p["top"]) == 3
        assert sum(probabilities) == pytest.approx(1, abs=1e-5)
        assert p["predicted"] == p["top"][0][0]
        low = p["confidence"] < saved["escalation"]["threshold"]
        expected = (
            "escalation_label" if p["predicted"] == "refund" else "low_confidence" if low else None
        )
        assert p["escalation_reason"] == expected
    report = (adapter / "report.md").read_text()
    assert "(serving path)" in report
    # the charts need matplotlib, a tools dependency: `gateway-tools eval charts` draws them
    assert "![coverage]" not in report and not list(adapter.glob("*.png"))


def test_refit_leaves_a_legacy_adapter_alone() -> None:
    held_out = {"validation": [Example("t", "{}", "a")]}
    answers = {"validation": [Item("a", 0.7, None, None, None)]}
    legacy = manifest(["a", "b"])
    assert refit(legacy, held_out, answers, 0.95) is answers
    assert "calibration" not in legacy


def test_refit_records_the_blocks_and_rescores_with_them() -> None:
    raw = [(-0.1, -3.0), (-2.0, -0.2), (-0.5, -0.9)]
    held_out = {"validation": [Example("t", "{}", g) for g in ("a", "b", "b")]}
    served = [Item(None, None, None, r, None) for r in raw]
    decision = manifest(["a", "b"], {"format": "decision_token"})
    again = refit(decision, held_out, {"validation": served}, 0.9)["validation"]
    temperature = decision["calibration"]["temperature"]
    assert [i.probabilities for i in again] == [
        pytest.approx(label_probs(r, temperature)) for r in raw
    ]
    assert decision["escalation"]["labels"] == [] and decision["calibration"]["items"] == 3


def test_atomic_json_write_is_readable_by_others(tmp_path: Path) -> None:
    target = tmp_path / "manifest.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
