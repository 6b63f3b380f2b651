from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from gateway.config import Settings
from gateway.models import resolve_model
from gateway.service.classify import default_system_prompt
from gateway.training.data import LabelledExample, load_labelled
from gateway.training.recipe import IGNORE, answer_json, batches, encode


def test_jsonl_and_csv(tmp_path: Path) -> None:
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(json.dumps({"text": " hi ", "intent": "other", "requires_human_agent": True}))
    assert load_labelled(jsonl) == [LabelledExample("hi", "other", True)]
    csv = tmp_path / "d.csv"
    csv.write_text("text,category\nmy card is lost,lost_or_stolen_card\n")
    assert load_labelled(csv) == [LabelledExample("my card is lost", "lost_or_stolen_card")]


@pytest.mark.parametrize("row", [{"text": "x"}, {"intent": "a"}, {"text": "", "intent": "a"}])
def test_bad_rows_name_the_line(tmp_path: Path, row: dict) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"text": "ok", "intent": "a"}) + "\n" + json.dumps(row))
    with pytest.raises(ValueError, match=r"d\.jsonl:2"):
        load_labelled(data)


def test_answer_is_whitespace_free_json() -> None:
    text = answer_json(LabelledExample("x", "billing", False), 0.9)
    assert text == '{"intent":"billing","confidence":0.9,"requires_human_agent":false}'


def test_loss_covers_only_the_answer() -> None:
    from transformers import AutoTokenizer

    info = resolve_model(None, Settings().model_cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(info.path)
    example = LabelledExample("I forgot my password", "account_access")
    ids, labels = encode(
        tokenizer, default_system_prompt(("account_access", "other")), example, 0.9
    )
    assert len(ids) == len(labels)
    answer = [t for t in labels if t != IGNORE]
    first = labels.index(answer[0])
    assert all(t == IGNORE for t in labels[:first])
    assert tokenizer.decode(answer) == answer_json(example, 0.9) + "<|im_end|>"
    # the prompt part is exactly what the gateway renders at inference
    prompt = tokenizer.decode(ids[:first])
    assert prompt.endswith("<|im_start|>assistant\n")


def test_batches_are_length_sorted_and_cover_everything() -> None:
    encoded = [([0] * n, [0] * n) for n in (5, 1, 9, 3, 7, 2)]
    chunks = batches(encoded, 2, random.Random(0))
    assert sorted(i for c in chunks for i in c) == list(range(6))
    for chunk in chunks:
        lengths = [len(encoded[i][0]) for i in chunk]
        assert max(lengths) - min(lengths) <= 2
