"""Scoring of engine evaluations: invalid answers count against the adapter."""

from __future__ import annotations

import json
import stat

import pytest

from gateway.evaluation import gold_human_flag, render_report, score
from gateway.fileio import write_json_atomic
from gateway.scoring import macro_f1
from gateway.training.data import Example


def test_invalid_answers_count_as_wrong() -> None:
    gold = ["a", "a", "b", "b"]
    result = score(gold, ["a", None, "b", "a"], [None, "output_truncated", None, None])
    assert result["items"] == 4
    assert result["accuracy"] == 0.5
    assert result["schema_valid_rate"] == 0.75
    assert result["errors"] == {"output_truncated": 1}
    assert result["top_confusions"] == [{"gold": "b", "predicted": "a", "count": 1}]
    assert "human_agent_accuracy" not in result


def test_macro_f1_weights_classes_equally() -> None:
    assert macro_f1(["a", "b"], ["a", "b"]) == 1.0
    # always "a": class a has F1 2/3 (precision 1/2, recall 1), class b has 0
    assert macro_f1(["a", "b"], ["a", "a"]) == pytest.approx((2 / 3) / 2)


def test_human_flag_is_scored_only_when_labelled() -> None:
    result = score(["a", "a"], ["a", "a"], [None, None], [True, False], [True, True])
    assert result["human_agent_accuracy"] == 0.5
    all_false = score(["a"], ["a"], [None], [False], [False])
    assert "human_agent_accuracy" not in all_false
    flagged = Example("x", '{"intent":"a","confidence":1,"requires_human_agent":true}', "a")
    assert gold_human_flag(flagged) is True
    assert gold_human_flag(Example("x", "not json", None)) is None


def test_report_lists_every_split() -> None:
    manifest = {
        "name": "demo",
        "version": "v1",
        "base_model": {"name": "m", "fingerprint": "f" * 64},
        "labels": ["a", "b"],
        "schema": {"name": "intent_classification"},
        "launch": "gateway train --config x.yaml",
        "evaluation": {
            "backend": "xgrammar",
            "validation": score(["a", "b"], ["a", "a"], [None, None]),
            "test": score(["a"], ["a"], [None], [True], [True]),
        },
        "dataset": {"train_size": 10, "per_class": None},
        "training": {
            "history": [{"epoch": 1, "train_loss": 0.5, "val_loss": 0.4}],
            "tokens": 100,
            "seconds": 1.0,
            "tokens_per_second": 100.0,
            "bf16": True,
            "best_val_loss": 0.4,
        },
        "data_checks": [{"check": "c", "status": "ok", "detail": "d"}],
    }
    report = render_report(manifest)
    assert "| validation | 2 | 0.5 |" in report
    assert "| test | 1 | 1.0 | 1.0 | 1.0 | 1.0 |" in report
    assert "b → a: 1" in report


def test_atomic_json_write_is_readable_by_others(tmp_path) -> None:
    target = tmp_path / "manifest.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
