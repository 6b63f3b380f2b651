"""Structured and plain-text tasks through the recipe: which tokens the loss covers, a
tiny run that publishes its schema, and a bad answer that publishes nothing.

Tests marked ``heavy`` need the provisioned base model's tokenizer (the tiny Llama of
``conftest`` carries it); the runs train a two-layer model for a few steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.common.prompts import render_answer, render_prompt
from gateway.models import ModelInfo
from gateway.registry.store import AdapterStore
from gateway.training.answers import ChatAnswer
from gateway.training.batching import IGNORE, MIN_SHARED_PREFIX, shared_prefix_length
from gateway.training.config import TrainConfig
from gateway.training.examples import Example, Message
from gateway.training.recipe import DataCheckFailed, train
from tests.unit.training.runs import limits
from tests.unit.training.test_task import TICKETS, chat_row, write

CONVERSATION = (
    Message("system", "Triage the ticket."),
    Message("user", "My parcel is late"),
    Message("assistant", '{"category":"SHIPPING"}', 1),
    Message("user", "Also, can I change the address?"),
    Message("assistant", "Let me check that for you.", 0),  # context only
    Message("user", "And I was charged twice"),
    Message("assistant", '{"category":"BILLING"}', 1),
)


def runs(labels: list[int]) -> list[tuple[int, int]]:
    """The [start, end) spans of scored positions."""
    spans, start = [], None
    for i, label in enumerate([*labels, IGNORE]):
        if label != IGNORE and start is None:
            start = i
        elif label == IGNORE and start is not None:
            spans.append((start, i))
            start = None
    return spans


@pytest.mark.heavy
def test_the_loss_covers_the_weighted_assistant_turns_only(tiny_base: ModelInfo) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_base.path)
    example = Example("And I was charged twice", '{"category":"BILLING"}', None, None, "d:1",
                      CONVERSATION)  # fmt: skip
    ids, labels = ChatAnswer(tokenizer, None).encode(example, example.text)
    turns = [m.as_dict() for m in CONVERSATION]
    # the sequence is the served request's prompt, then what the model generates
    assert ids == render_prompt(tokenizer, turns[:-1]) + render_answer(
        tokenizer, turns[-1]["content"]
    )
    scored = [(i, label) for i, label in enumerate(labels) if label != IGNORE]
    assert all(ids[i] == label for i, label in scored)  # labels are the next tokens' ids
    spans = runs(labels)
    assert [tokenizer.decode(ids[a:b]) for a, b in spans] == [
        '{"category":"SHIPPING"}<|im_end|>',
        '{"category":"BILLING"}<|im_end|>',
    ]  # the weight-0 turn, the system and user turns and the template score nothing
    # a rewritten message replaces the user turn the last answer replies to
    ids2, _ = ChatAnswer(tokenizer, None).encode(example, "charged twice!!")
    assert "charged twice!!" in tokenizer.decode(ids2) and example.text not in tokenizer.decode(
        ids2
    )
    # rows sharing a system prompt still share a prefix, masked, cut before any scored token
    answer = '{"category":"SHIPPING"}'
    turns2 = (CONVERSATION[0], Message("user", "Where is it?"), Message("assistant", answer, 1))
    other = Example("Where is it?", answer, None, None, "d:2", turns2)
    encoded = [(ids, labels), ChatAnswer(tokenizer, None).encode(other, other.text)]
    prefix = shared_prefix_length(encoded, [0, 1])
    assert prefix >= MIN_SHARED_PREFIX and all(label == IGNORE for label in labels[: prefix + 1])


@pytest.mark.heavy
def test_a_configured_system_prompt_opens_rows_without_one(tiny_base: ModelInfo) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_base.path)
    bare = Example("hi", '{"a":1}', None, None, "d:1",
                   (Message("user", "hi"), Message("assistant", '{"a":1}', 1)))  # fmt: skip
    ids, _ = ChatAnswer(tokenizer, "Answer in JSON.").encode(bare, bare.text)
    assert tokenizer.decode(ids).startswith("<|im_start|>system\nAnswer in JSON.<|im_end|>")


def tiny(tmp_path: Path, data: Path, **extra: object) -> TrainConfig:
    options: dict = {
        "name": "ticket", "data": data, "val_share": 0.34, "rank": 2, "alpha": 4, "epochs": 1,
        "batch_size": 2, "target_modules": ["q_proj", "v_proj"], "bf16": False,
        "out_root": tmp_path / "store", "evaluate": False,
    }  # fmt: skip
    return TrainConfig(**{**options, **extra})


@pytest.mark.heavy
def test_a_structured_run_publishes_its_schema(tmp_path: Path, tiny_base: ModelInfo) -> None:
    data = write(tmp_path, [chat_row(t, a) for t, a in TICKETS])
    out = train(tiny(tmp_path, data), tiny_base, limits(tiny_base))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training"]["answer"] == "structured"
    assert manifest["training"]["augment"] == 0
    assert manifest["labels"] == [] and "answer" not in manifest and "lexicon" not in manifest
    block = manifest["schema"]
    assert (block["name"], block["source"]) == ("ticket", "inferred")
    assert block["json"]["properties"]["urgency"] == {"type": "string", "enum": ["HIGH", "LOW"]}
    assert manifest["system_prompt"] is None  # the rows carry their own
    adapter = AdapterStore(tmp_path / "store", limits(tiny_base)).inspect("ticket", "v1")
    assert adapter.answer_schema == block["json"] and adapter.schema_name == "ticket"
    assert adapter.labels is None  # /v1/classify refuses it; chat serves it


@pytest.mark.heavy
def test_a_plain_text_run_records_no_schema(tmp_path: Path, tiny_base: ModelInfo) -> None:
    rows = [chat_row(t, f"Thanks, we are on it: {a['action']}.") for t, a in TICKETS]
    out = train(tiny(tmp_path, write(tmp_path, rows)), tiny_base, limits(tiny_base))
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["training"]["answer"], manifest["schema"]) == ("text", None)
    adapter = AdapterStore(tmp_path / "store", limits(tiny_base)).inspect("ticket", "v1")
    assert adapter.answer_schema is None


@pytest.mark.heavy
def test_an_answer_outside_the_schema_publishes_nothing(
    tmp_path: Path, tiny_base: ModelInfo, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    schema = tmp_path / "ticket.json"
    schema.write_text(json.dumps({
        "type": "object", "required": ["category", "urgency", "action"],
        "properties": {"category": {"enum": ["SHIPPING", "BILLING"]},
                       "urgency": {"enum": ["HIGH", "LOW"]}, "action": {"type": "string"}},
    }))  # fmt: skip
    rows = [chat_row(t, a) for t, a in TICKETS]
    rows[4]["messages"][-1]["content"] = json.dumps({**TICKETS[4][1], "category": "RETURNS"})
    data = write(tmp_path, rows)
    with pytest.raises(DataCheckFailed, match=r"d\.jsonl:5: category: 'RETURNS' is not one of"):
        train(tiny(tmp_path, data, schema_file=schema), tiny_base, limits(tiny_base))
    assert not (tmp_path / "store").exists()
    # through the CLI: one line, exit status 2, no traceback
    monkeypatch.setattr("gateway.cli.commands.base_model", lambda *_: tiny_base)
    monkeypatch.setenv("GATEWAY_MAX_LORA_RANK", "16")
    argv = ["train", "name=ticket", f"data={data}", f"schema_file={schema}",
            f"out_root={tmp_path / 'store'}", "evaluate=false"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "answers match schema: 1 of 6 fail 'ticket'" in err and "nothing was trained" in err
    assert not (tmp_path / "store").exists()


def test_eval_refuses_a_structured_adapter_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write(tmp_path, [chat_row(t, a) for t, a in TICKETS])
    folder = tmp_path / "store" / "ticket" / "v1"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"training": {"answer": "structured"}}))
    argv = ["eval", "name=ticket", f"data={data}", f"out_root={tmp_path / 'store'}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a structured adapter" in err
