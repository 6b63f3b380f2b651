"""OpenAI fine-tuning files in, and the task they teach out: loading, the schema's
source (named, file, Pydantic model, inferred), the answers' canonical form, and every
mistake as one ``UsageError`` naming its line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.common.usage import UsageError
from gateway.training.checks import FAIL, OK, run_checks
from gateway.training.config import TrainConfig, load_config
from gateway.training.data import load_examples, load_task_splits
from gateway.training.task import resolve_task

TICKETS = [
    ("My parcel is a week late", {"category": "SHIPPING", "urgency": "HIGH",
                                  "action": "Check carrier tracking"}),
    ("Where is my order?", {"category": "SHIPPING", "urgency": "LOW",
                            "action": "Send the tracking link"}),
    ("I was charged twice", {"category": "BILLING", "urgency": "HIGH",
                             "action": "Refund the duplicate charge"}),
    ("Can I get an invoice?", {"category": "BILLING", "urgency": "LOW",
                               "action": "Email the invoice"}),
    ("Package arrived broken", {"category": "SHIPPING", "urgency": "HIGH",
                                "action": "Start a replacement"}),
    ("Card declined at checkout", {"category": "BILLING", "urgency": "LOW",
                                   "action": "Ask for another card"}),
]  # fmt: skip


def chat_row(text: str, answer: Any, system: str | None = "Triage the ticket.") -> dict:
    content = answer if isinstance(answer, str) else json.dumps(answer, indent=1)
    messages = [{"role": "user", "content": text}, {"role": "assistant", "content": content}]
    return {"messages": ([{"role": "system", "content": system}] if system else []) + messages}


def write(tmp_path: Path, rows: list[Any], name: str = "d.jsonl") -> Path:
    path = tmp_path / name
    lines = (r if isinstance(r, str) else json.dumps(r) for r in rows)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def cfg(data: Path, **extra: Any) -> TrainConfig:
    return TrainConfig(name="ticket", data=data, out_root=data.parent / "store", **extra)


def tickets(tmp_path: Path) -> Path:
    return write(tmp_path, [chat_row(t, a) for t, a in TICKETS])


def test_multi_turn_rows_keep_their_turns_and_weights(tmp_path: Path) -> None:
    row = {
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text",
                                                                         "text": "there"}]},
            {"role": "assistant", "content": "Hello.", "weight": 0},
            {"role": "user", "content": "Where is my parcel?"},
            {"role": "assistant", "content": "On its way."},
            {"role": "user", "content": "Thanks"},  # after the last trained answer: dropped
        ]
    }  # fmt: skip
    (example,) = load_examples(write(tmp_path, [row]), 0.9)
    assert [(m.role, m.weight) for m in example.messages] == [
        ("system", 0), ("user", 0), ("assistant", 0), ("user", 0), ("assistant", 1),
    ]  # fmt: skip
    assert example.messages[1].content == "Hi there"
    assert (example.text, example.completion) == ("Where is my parcel?", "On its way.")
    assert example.answers == ["On its way."]
    pair = {"prompt": "2+2?", "completion": "4"}
    (example,) = load_examples(write(tmp_path, [pair]), 0.9)
    assert [(m.role, m.content, m.weight) for m in example.messages] == [
        ("user", "2+2?", 0), ("assistant", "4", 1),
    ]  # fmt: skip


USER, BOT = {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"messages": [USER, {**BOT, "weight": 2}]}, "weight must be 0 or 1"),
        ({"messages": [USER, {**BOT, "weight": True}]}, "weight must be 0 or 1"),
        ({"messages": [{**USER, "weight": 1}, BOT]}, "weight is for assistant messages"),
        ({"messages": [USER, {**BOT, "weight": 0}]}, "no assistant message to train on"),
        ({"messages": [BOT, USER]}, "must follow a user one"),
        ({"messages": [{"role": "system", "content": "s"}, BOT]}, "must follow a user one"),
        ({"messages": [USER, {"role": "tool", "content": "x"}, BOT]}, "role 'tool'"),
        ({"messages": [USER, {**BOT, "tool_calls": [{"id": "1"}]}]}, "tool calls"),
        ({"messages": [USER, BOT], "tools": [{"type": "function"}]}, "tool definitions"),
        ({"messages": [{"role": "user", "content": "  "}, BOT]}, "content is empty"),
        ({"messages": [USER, {"role": "assistant", "content": None}]}, "must be a string"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}, BOT]},
         "only text content parts"),
        ({"messages": [{"role": "user", "content": "x" * 40_000}, BOT]}, "the limit is 32,000"),
        ({"messages": []}, "'messages' must be a list, with at least one message"),
        ({"prompt": "", "completion": "x"}, "'prompt' is empty"),
        ({"prompt": "p", "completion": 4}, "'prompt' and 'completion' must be strings"),
    ],
)  # fmt: skip
def test_bad_openai_rows_name_the_line(tmp_path: Path, row: dict, problem: str) -> None:
    data = write(tmp_path, [{"messages": [USER, BOT]}, row])
    with pytest.raises(UsageError, match=r"d\.jsonl:2") as caught:
        load_examples(data, 0.9)
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_ten_megabyte_line_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    huge = json.dumps({"messages": [USER, {"role": "assistant", "content": "a" * 10_000_000}]})
    with pytest.raises(UsageError, match=r"d\.jsonl:2: the line is 10,000,\d+ bytes"):
        load_examples(write(tmp_path, [{"messages": [USER, BOT]}, huge]), 0.9)


def test_json_answers_get_an_inferred_schema(tmp_path: Path) -> None:
    rows = [chat_row(t, a) for t, a in TICKETS]
    rows[0]["messages"][-1]["content"] = json.dumps({**TICKETS[0][1], "order_id": 1234})
    task = load_task_splits(cfg(write(tmp_path, rows))).task
    assert (task.kind, task.source, task.schema_name) == ("structured", "inferred", "ticket")
    assert task.schema == {
        "type": "object",
        "properties": {
            "category": {"type": "string", "enum": ["BILLING", "SHIPPING"]},
            "urgency": {"type": "string", "enum": ["HIGH", "LOW"]},
            "action": {"type": "string"},  # six distinct values in six answers: free text
            "order_id": {"type": "integer"},
        },
        "required": ["category", "urgency", "action"],  # order_id is in one answer only
        "additionalProperties": False,
    }


def test_answers_are_rewritten_as_the_constrained_decoder_writes_them(tmp_path: Path) -> None:
    """Whitespace-free, keys in schema order: what serving with the schema produces."""
    schema = {"type": "object", "required": ["category", "urgency", "action"],
              "properties": {"category": {"type": "string"}, "urgency": {"type": "string"},
                             "action": {"type": "string"}}}  # fmt: skip
    (tmp_path / "ticket.json").write_text(json.dumps(schema))
    rows = [chat_row(t, json.dumps(dict(reversed(a.items())), indent=2)) for t, a in TICKETS]
    parts = load_task_splits(cfg(write(tmp_path, rows), schema_file=tmp_path / "ticket.json"))
    assert parts.task.source == "file"
    example = next(e for e in parts.train if e.text == TICKETS[2][0])
    expected = '{"category":"BILLING","urgency":"HIGH","action":"Refund the duplicate charge"}'
    assert example.completion == expected
    assert example.messages[-1].content == expected


def test_the_split_keeps_the_first_enum_field_in_proportion(tmp_path: Path) -> None:
    rows = [chat_row(f"{t} #{i}", a) for i in range(5) for t, a in TICKETS]  # 15 + 15
    parts = load_task_splits(cfg(write(tmp_path, rows), val_share=0.2, seed=4))
    categories = [json.loads(e.completion)["category"] for e in parts.val]
    assert sorted(categories) == ["BILLING"] * 3 + ["SHIPPING"] * 3
    again = load_task_splits(cfg(write(tmp_path, rows), val_share=0.2, seed=4))
    assert [e.text for e in again.val] == [e.text for e in parts.val]


def test_intent_answers_and_labelled_rows_stay_classification(tmp_path: Path) -> None:
    answer = {"intent": "billing", "confidence": 0.9, "requires_human_agent": False}
    data = write(tmp_path, [chat_row("charged twice", answer), {"text": "hi", "intent": "other"}])
    task = resolve_task(cfg(data), load_examples(data, 0.9))
    assert (task.kind, task.schema_name, task.schema) == (
        "classification", "intent_classification", None,
    )  # fmt: skip
    only_intent = write(tmp_path, [chat_row("x", {"intent": "billing"})], "one.jsonl")
    assert resolve_task(cfg(only_intent), load_examples(only_intent, 0.9)).kind == "structured"


def test_plain_text_answers_train_a_chat_adapter(tmp_path: Path) -> None:
    data = write(tmp_path, [chat_row("hi", "Hello! How can I help?"), chat_row("bye", "Bye.")])
    task = load_task_splits(cfg(data)).task
    assert (task.kind, task.schema, task.manifest_block()) == ("text", None, None)


def test_a_named_schema_and_a_pydantic_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    triage = {"summary": "Parcel late", "priority": "high", "product_area": "other",
              "customer_sentiment": "negative"}  # fmt: skip
    data = write(tmp_path, [chat_row("my parcel is late", triage)])
    task = load_task_splits(cfg(data, schema_name="support_ticket")).task
    assert (task.source, task.schema_name, task.schema["title"]) == (
        "named", "support_ticket", "SupportTicket",
    )  # fmt: skip
    (tmp_path / "ticket_models.py").write_text(
        "from typing import Literal\nfrom pydantic import BaseModel\n"
        "class Ticket(BaseModel):\n"
        "    category: Literal['SHIPPING', 'BILLING']\n"
        "    urgency: Literal['HIGH', 'LOW']\n"
        "    action: str\n"
    )
    monkeypatch.chdir(tmp_path)
    task = load_task_splits(cfg(tickets(tmp_path), schema_model="ticket_models:Ticket")).task
    assert (task.source, task.schema_name, task.model.__name__) == ("model", "Ticket", "Ticket")
    assert task.schema["properties"]["urgency"]["enum"] == ["HIGH", "LOW"]


def test_structured_answers_are_checked_against_the_schema(tmp_path: Path) -> None:
    rows = [chat_row(t, a) for t, a in TICKETS]
    rows[3]["messages"][-1]["content"] = json.dumps({**TICKETS[3][1], "urgency": "SOON"})
    (tmp_path / "ticket.json").write_text(json.dumps({
        "type": "object", "required": ["category", "urgency", "action"],
        "properties": {"category": {"enum": ["SHIPPING", "BILLING"]},
                       "urgency": {"enum": ["HIGH", "LOW"]}, "action": {"type": "string"}},
    }))  # fmt: skip
    parts = load_task_splits(cfg(write(tmp_path, rows), schema_file=tmp_path / "ticket.json"))
    report = run_checks(parts.train, parts.held_out, parts.task, (), [20] * len(parts.train), 99)
    found = {name: (status, detail) for name, status, detail in report.rows}
    status, detail = found["answers match schema"]
    assert status == FAIL
    assert "1 of 6 fail 'ticket': " in detail and "d.jsonl:4: urgency: 'SOON'" in detail
    assert "labels in label set" not in found and "class balance" not in found
    rows[3]["messages"][-1]["content"] = json.dumps(TICKETS[3][1])
    parts = load_task_splits(cfg(write(tmp_path, rows), schema_file=tmp_path / "ticket.json"))
    report = run_checks(parts.train, parts.held_out, parts.task, (), [20] * len(parts.train), 99)
    assert {name: status for name, status, _ in report.rows}["answers match schema"] == OK


def test_one_prompt_with_two_structured_answers_fails(tmp_path: Path) -> None:
    rows = [chat_row(t, a) for t, a in TICKETS] + [chat_row(TICKETS[0][0], TICKETS[1][1])]
    parts = load_task_splits(cfg(write(tmp_path, rows), val_share=0))
    report = run_checks(parts.train, parts.held_out, parts.task, (), [20] * len(parts.train), 99)
    assert {name: status for name, status, _ in report.rows}["exact duplicates"] == FAIL


def bad_schema(tmp_path: Path, schema: Any) -> dict[str, Any]:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(schema))
    return {"schema_file": path}


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: {"schema_file": p / "nope.json"}, "does not exist"),
        (lambda p: bad_schema(p, ["type", "object"]), "must hold a JSON object"),
        (lambda p: bad_schema(p, {"type": "strin"}), "is not a valid JSON Schema"),
        (lambda p: bad_schema(p, {"type": "array"}), "must describe a JSON object"),
        (lambda p: bad_schema(p, {"type": "object", "properties": {
            "a": {"$ref": "https://example.com/a.json"}}}), "only local '#/...' references"),
        (lambda p: bad_schema(p, {"type": "object", "properties": {
            "a": {"type": "string", "pattern": "(a+)+$"}}}), "nests quantifiers"),
        (lambda p: bad_schema(p, {"type": "object", "properties": {
            "a": {"type": "integer", "maximum": 2**70}}}), "outside the 64-bit range"),
        (lambda p: bad_schema(p, {"type": "object", "properties": {
            "a": {"type": "string", "pattern": "(?<=x)y"}}}), "the engine cannot enforce it"),
        (lambda p: {"schema_model": "no_such_module_here:Model"}, "cannot import it"),
        (lambda p: {"schema_model": "json:loads"}, "is not a Pydantic model class"),
        (lambda p: {"schema_model": "json:NoSuchClass"}, "cannot import it (AttributeError"),
        (lambda p: {"answer": "structured", "labels": ["a", "b"]},
         "labels and labels_file are for classification"),
        (lambda p: {"answer": "decision_token", "schema_name": "support_ticket"},
         "classifies with the intent_classification schema"),
    ],
)  # fmt: skip
def test_schema_mistakes_are_one_line(tmp_path: Path, make: Any, problem: str) -> None:
    with pytest.raises(UsageError) as caught:
        load_task_splits(cfg(tickets(tmp_path), **make(tmp_path)))
    assert problem in str(caught.value) and "\n" not in str(caught.value)


def test_a_model_module_that_fails_on_import_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_models.py").write_text("raise RuntimeError('no database here')\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=r"cannot import it \(RuntimeError: no database here\)"):
        load_task_splits(cfg(tickets(tmp_path), schema_model="broken_models:Ticket"))


def test_a_file_mixing_json_and_text_answers_is_refused(tmp_path: Path) -> None:
    rows = [chat_row(t, a) for t, a in TICKETS] + [chat_row("hello", "Hi, how can I help?")]
    with pytest.raises(
        UsageError, match=r"d\.jsonl:7: the answer is plain text, but \S*d\.jsonl:1's"
    ):
        load_task_splits(cfg(write(tmp_path, rows)))
    turns = {"messages": [USER, {"role": "assistant", "content": '{"a": 1}'}, USER, BOT]}
    with pytest.raises(UsageError, match="some answers are JSON objects and some plain text"):
        load_task_splits(cfg(write(tmp_path, [turns])))
    text = write(tmp_path, [chat_row("hi", "Hello.")], "text.jsonl")
    with pytest.raises(UsageError, match="trained without a schema"):
        load_task_splits(cfg(text, schema_name="support_ticket"))


ROOT = Path(__file__).resolve().parents[3]


def test_the_snips_config_reads_extraction_answers_from_its_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``answer_fields``: SNIPS rows as they are, the answer the object of intent + slots,
    every one valid against ``schemas/json/snips.json``; split by intent."""
    monkeypatch.chdir(ROOT)
    # the test file alone (700 rows) keeps this fast; the train file has the same shape
    parts = load_task_splits(
        load_config(ROOT / "adapters/snips/train.yaml", ["data=data/snips/test.jsonl", "test=null"])
    )
    assert (parts.task.kind, parts.task.source, parts.task.schema_name) == (
        "structured", "named", "snips",
    )  # fmt: skip
    every = parts.train + parts.val
    assert len(every) == 700
    assert not [e.source for e in every if parts.task.problem(e.completion)]
    first = json.loads((ROOT / "data/snips/test.jsonl").read_text().splitlines()[0])
    example = next(e for e in every if e.text == first["text"])
    assert json.loads(example.completion) == {"intent": first["intent"], "slots": first["slots"]}
    assert len({json.loads(e.completion)["intent"] for e in parts.val}) == 7


def test_the_ticket_config_infers_the_documented_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    task = load_task_splits(load_config(ROOT / "adapters/ticket/train.yaml", [])).task
    props = task.schema["properties"]
    assert props["category"]["enum"] == ["ACCOUNT", "BILLING", "PRODUCT", "RETURNS", "SHIPPING"]
    assert props["urgency"]["enum"] == ["HIGH", "LOW", "MEDIUM"]
    assert props["action"] == {"type": "string"}
    assert task.schema["required"] == ["category", "urgency", "action"]


def test_answer_fields_name_a_missing_field(tmp_path: Path) -> None:
    data = write(tmp_path, [{"text": "play jazz", "intent": "PlayMusic"}])
    with pytest.raises(UsageError, match=r"d\.jsonl:1: no 'slots', which answer_fields names"):
        load_task_splits(cfg(data, answer_fields=["intent", "slots"]))
