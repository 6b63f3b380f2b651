from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.common.prompts import classify_messages, default_system_prompt, render_prompt
from gateway.config import Settings
from gateway.models import resolve_model
from gateway.training.answers import DecisionTokenAnswer, JsonAnswer
from gateway.training.batching import IGNORE
from gateway.training.checks import FAIL, WARN, run_checks
from gateway.training.config import load_config
from gateway.training.data import (
    Example,
    LabelledExample,
    answer_json,
    load_examples,
    load_labelled,
    split,
)
from gateway.training.task import Task

LABELS = ("billing", "other")


def ex(text: str, label: str = "billing", completion: str | None = None) -> Example:
    return Example(text, completion or answer_json(LabelledExample(text, label), 0.9), label)


def test_jsonl_and_csv(tmp_path: Path) -> None:
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(json.dumps({"text": " hi ", "intent": "other", "requires_human_agent": True}))
    assert load_labelled(jsonl) == [LabelledExample("hi", "other", True)]
    csv = tmp_path / "d.csv"
    csv.write_text("text,category\nmy card is lost,lost_or_stolen_card\n")
    assert load_labelled(csv) == [LabelledExample("my card is lost", "lost_or_stolen_card")]


def test_chat_and_prompt_completion_formats(tmp_path: Path) -> None:
    answer = '{"intent":"other","confidence":1,"requires_human_agent":false}'
    chat = {
        "messages": [
            {"role": "system", "content": "Classify."},
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": answer},
        ]
    }
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(chat) + "\n" + json.dumps({"prompt": "yo", "completion": answer}))
    first, second = load_examples(data, 0.9)
    assert (first.text, first.system_prompt, first.label) == ("hello", "Classify.", "other")
    assert (second.text, second.label) == ("yo", "other")


@pytest.mark.parametrize("row", [{"text": "x"}, {"intent": "a"}, {"text": "", "intent": "a"}])
def test_bad_rows_name_the_line(tmp_path: Path, row: dict) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"text": "ok", "intent": "a"}) + "\n" + json.dumps(row))
    with pytest.raises(ValueError, match=r"d\.jsonl:2"):
        load_labelled(data)


def test_split_is_deterministic_and_stratified() -> None:
    items = [ex(f"b{i}") for i in range(10)] + [ex(f"o{i}", "other") for i in range(10)]
    train, val = split(items, 0.2, seed=3)
    assert split(items, 0.2, seed=3) == (train, val)
    assert sorted(e.label for e in val) == ["billing", "billing", "other", "other"]
    assert {e.text for e in train}.isdisjoint(e.text for e in val)


def _checks(train: list[Example], held: list[Example], lengths: list[int] | None = None):
    report = run_checks(
        train, {"validation": held}, Task("classification", schema_name="intent_classification"),
        LABELS,
        lengths or [10] * len(train), 100,
    )  # fmt: skip
    return {name: status for name, status, _ in report.rows}


def test_checks_pass_clean_data() -> None:
    train = [ex("a"), ex("b"), ex("c", "other"), ex("d", "other")]
    assert set(_checks(train, [ex("e")]).values()) == {"ok"}


def test_checks_catch_each_problem() -> None:
    base = [ex("a"), ex("b"), ex("c", "other"), ex("d", "other")]
    assert _checks([*base, ex("x", completion="{oops")], [])["completions match schema"] == FAIL
    bad = '{"intent":"billing","confidence":7,"requires_human_agent":false}'
    assert _checks([*base, ex("x", completion=bad)], [])["completions match schema"] == FAIL
    coerced = '{"intent":"billing","confidence":"0.9","requires_human_agent":false}'
    assert _checks([*base, ex("x", completion=coerced)], [])["completions match schema"] == FAIL
    assert _checks([*base, ex("x", "weather")], [])["labels in label set"] == FAIL
    assert _checks([*base, ex("a")], [])["exact duplicates"] == WARN
    assert _checks([*base, ex("a", "other")], [])["exact duplicates"] == FAIL
    assert _checks([*base, ex("A!")], [])["near duplicates"] == WARN
    assert _checks(base, [ex("b.")])["leakage train/validation"] == WARN
    skewed = [*base, *(ex(f"z{i}") for i in range(10))]
    assert _checks(skewed, [])["class balance"] == WARN
    assert _checks(base, [], [10, 10, 10, 500])["context length"] == FAIL


def test_answer_is_whitespace_free_json() -> None:
    text = answer_json(LabelledExample("x", "billing", False), 0.9)
    assert text == '{"intent":"billing","confidence":0.9,"requires_human_agent":false}'


@pytest.mark.heavy  # the embedded model's tokenizer
def test_loss_covers_only_the_answer() -> None:
    from transformers import AutoTokenizer

    info = resolve_model(None, Settings().model_cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(info.path)
    example = ex("I forgot my password", "other")
    system = default_system_prompt(LABELS)
    ids, labels = JsonAnswer(tokenizer, system).encode(example, example.text)
    assert len(ids) == len(labels)
    answer = [t for t in labels if t != IGNORE]
    first = labels.index(answer[0])
    assert all(t == IGNORE for t in labels[:first])
    assert tokenizer.decode(answer) == example.completion + "<|im_end|>"  # SmolLM2 is ChatML
    # the prompt trained on is the one the engine serves (VllmEngine.encode_chat)
    assert ids[:first] == render_prompt(tokenizer, classify_messages(system, example.text))
    assert tokenizer.decode(ids[:first]).endswith("<|im_start|>assistant\n")


@pytest.mark.heavy  # the embedded model's tokenizer
def test_a_decision_token_row_is_the_served_prompt_and_the_label_index() -> None:
    from transformers import AutoTokenizer

    from gateway.common.prompts import decision_tokens

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(None, Settings().model_cache_dir).path)
    answer = DecisionTokenAnswer(tokenizer, "Classify.", decision_tokens(tokenizer, LABELS))
    example = ex("  I forgot   my password ", "other")
    ids, label = answer.encode(example, "a rewritten  text")
    assert ids == render_prompt(tokenizer, classify_messages("Classify.", "a rewritten text"))
    assert label == LABELS.index("other")
    assert answer.encode(ex("x", "unknown"), "x")[1] == -1  # the data checks refuse it


def test_config_file_and_overrides(tmp_path: Path) -> None:
    config = tmp_path / "t.yaml"
    config.write_text("name: demo\ndata: d.jsonl\nepochs: 3\nlabels: [a, b]\n")
    cfg = load_config(config, ["epochs=1", "learning_rate=5e-4", "bf16=false"])
    assert (cfg.epochs, cfg.learning_rate, cfg.bf16, cfg.label_set()) == (
        1,
        5e-4,
        False,
        ("a", "b"),
    )
    assert cfg.out_dir == Path("adapters/demo/v1")
    with pytest.raises(ValueError):
        load_config(config, ["name=../escape"])
    with pytest.raises(ValueError):
        load_config(config, ["no_such_key=1"])
    with pytest.raises(ValueError, match="schema_name must be one of"):
        load_config(config, ["schema_name=nope"])
