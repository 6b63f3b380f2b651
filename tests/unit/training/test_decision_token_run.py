"""A seconds-long decision-token run on a tiny Llama: the loss, the checkpoint kept, and
the manifest blocks the gateway serves it by."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.common.prompts import (
    classify_messages,
    decision_tokens,
    label_system_prompt,
    render_prompt,
)
from gateway.models import ModelInfo
from gateway.registry.store import AdapterStore
from gateway.training.config import ALL_LINEAR, TrainConfig
from gateway.training.data import load_splits
from gateway.training.recipe import DataCheckFailed, train
from tests.unit.training.runs import ROWS, config, limits

# billing is flagged for a person in 2 of its 3 rows: it escalates by default
FLAGS = {"I was billed twice": True, "refund my last payment": True}


def _flagged_config(tmp_path: Path, **extra: object) -> TrainConfig:
    cfg = config(tmp_path, ROWS, **extra)
    cfg.data.write_text(
        "\n".join(
            json.dumps({"text": t, "intent": lab, "requires_human_agent": FLAGS.get(t, False)})
            for t, lab in ROWS
        )
    )
    return cfg


def _served_val_nll(out: Path, base: ModelInfo, cfg: TrainConfig, manifest: dict) -> float:
    """The saved adapter's label cross-entropy on validation, from full-model logits."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base.path)
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.float32), out
    ).eval()
    ids = [t["id"] for t in manifest["answer"]["tokens"]]
    _, val, _ = load_splits(cfg)
    total = 0.0
    with torch.no_grad():
        for example in val:
            prompt = render_prompt(
                tokenizer, classify_messages(manifest["system_prompt"], example.text)
            )
            logits = model(input_ids=torch.tensor([prompt])).logits[0, -1, ids]
            gold = manifest["labels"].index(example.label)
            total -= float(torch.log_softmax(logits, -1)[gold])
    return total / len(val)


@pytest.mark.heavy
def test_decision_token_run_writes_answer_calibration_and_escalation(
    tmp_path: Path, tiny_base: ModelInfo
) -> None:
    from transformers import AutoTokenizer

    cfg = _flagged_config(
        tmp_path, epochs=3, batch_size=2, learning_rate=1e-2, bf16=False,
        target_modules=list(ALL_LINEAR), early_stopping_patience=0,
    )  # fmt: skip
    out = train(cfg, tiny_base, limits(tiny_base))
    manifest = json.loads((out / "manifest.json").read_text())
    labels = ("billing", "other")
    tokens = decision_tokens(AutoTokenizer.from_pretrained(tiny_base.path), labels)
    assert manifest["answer"] == {
        "format": "decision_token",
        "version": 1,
        "tokens": [{"label": t.label, "text": t.text, "id": t.token_id} for t in tokens],
    }
    assert manifest["system_prompt"] == label_system_prompt(labels, tokens)
    training = manifest["training"]
    assert (training["answer"], training["epochs"], training["epochs_run"]) == (
        "decision_token", 3, 3,
    )  # fmt: skip
    assert training["examples"] == 3 * manifest["dataset"]["train_size"]
    assert training["examples_per_second"] > 0 and training["tokens"] > 0

    # the kept checkpoint is the best epoch's, and its loss is the label cross-entropy
    best = training["best_val_loss"]
    assert best == min(h["val_loss"] for h in training["history"])
    assert _served_val_nll(out, tiny_base, cfg, manifest) == pytest.approx(best, rel=1e-4)

    calibration = manifest["calibration"]
    assert calibration["source"] == "training" and calibration["fit_on"] == "validation"
    assert calibration["items"] == manifest["dataset"]["held_out_sizes"]["validation"]
    assert calibration["nll_before"] == round(best, 4)
    assert calibration["nll_after"] <= calibration["nll_before"]
    escalation = manifest["escalation"]
    assert escalation["labels"] == ["billing"] and escalation["target_accuracy"] == 0.95
    assert 0 <= escalation["threshold"] <= 1

    adapter = AdapterStore(tmp_path / "store", limits(tiny_base)).inspect("tiny", "v1")
    assert adapter.answer == tokens
    assert adapter.temperature == pytest.approx(calibration["temperature"])
    assert adapter.escalation is not None and adapter.escalation.labels == {"billing"}


@pytest.mark.heavy
def test_a_label_set_without_decision_tokens_trains_nothing(
    tmp_path: Path, tiny_base: ModelInfo
) -> None:
    labels = ["billing", "other", *(f"label_{i}" for i in range(127))]  # 129: over the cap
    with pytest.raises(DataCheckFailed, match=r"at most 128.*answer=json"):
        train(config(tmp_path, ROWS, labels=labels), tiny_base, limits(tiny_base))
    assert not (tmp_path / "store").exists()
