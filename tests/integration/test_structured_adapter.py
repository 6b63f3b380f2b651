"""Train a tiny structured adapter from an OpenAI chat JSONL file with no schema given,
register it with the running gateway, and check that a chat request without
``response_format`` comes back as JSON valid against the schema training recorded.

The run is a few optimizer steps of the real base model on eight tickets (seconds on a
CPU); its answers need not be right, only valid: the gateway constrains and validates.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from gateway.common.lora import ALL_LINEAR
from gateway.config import Settings
from gateway.models import resolve_model
from gateway.registry.store import StoreLimits
from gateway.training.config import TrainConfig
from gateway.training.recipe import train
from tests.integration.conftest import Gateway

pytestmark = pytest.mark.integration

SYSTEM = "Triage the support ticket. Answer with JSON."
TICKETS = [
    ("My parcel is a week late", "SHIPPING", "HIGH", False),
    ("Where is my order? It said two days", "SHIPPING", "LOW", False),
    ("The box arrived crushed and the lamp is broken", "SHIPPING", "HIGH", True),
    ("Can you send it to my office instead?", "SHIPPING", "LOW", False),
    ("I was charged twice for one order", "BILLING", "HIGH", True),
    ("Please send me an invoice for March", "BILLING", "LOW", False),
    ("My card was declined but the money left my account", "BILLING", "HIGH", True),
    ("Do you take PayPal?", "BILLING", "LOW", False),
]


def chat_file(path: Path) -> Path:
    rows = []
    for text, category, urgency, escalate in TICKETS:
        answer = {"category": category, "urgency": urgency, "escalate": escalate}
        rows.append({"messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": text},
            {"role": "assistant", "content": json.dumps(answer)},
        ]})  # fmt: skip
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_a_trained_structured_adapter_answers_in_its_schema(
    gateway: Gateway, tmp_path: Path
) -> None:
    base = resolve_model(None, Settings().model_cache_dir)
    cfg = TrainConfig(
        name="ticket-tiny", data=chat_file(tmp_path / "tickets.jsonl"), val_share=0,
        epochs=2, batch_size=4, rank=4, alpha=8, target_modules=["q_proj", "v_proj"],
        out_root=gateway.store, evaluate=False,
    )  # fmt: skip
    limits = StoreLimits(base.fingerprint, 16, frozenset(ALL_LINEAR), 10**9)
    out = train(cfg, base, limits)
    manifest = json.loads((out / "manifest.json").read_text())
    schema = manifest["schema"]["json"]
    assert manifest["training"]["answer"] == "structured"
    assert schema["properties"]["urgency"] == {"type": "string", "enum": ["HIGH", "LOW"]}

    res = gateway.admin("POST", "/admin/adapters", {"path": "ticket-tiny/v1"})
    assert res.status_code == 200, res.text
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "The courier lost my package, I need it today"},
    ]
    body = {"model": "ticket-tiny", "messages": messages, "max_tokens": 64, "temperature": 0}
    res = gateway.post("/v1/chat/completions", body)
    assert res.status_code == 200, res.text
    assert res.headers["x-gateway-schema"] == "ticket-tiny"
    assert res.headers["x-gateway-schema-source"] == "adapter-default"
    assert res.headers["x-gateway-adapter"] == "ticket-tiny"
    answer = json.loads(res.json()["choices"][0]["message"]["content"])
    jsonschema.validate(answer, schema)

    # response_format still decides when it is given
    res = gateway.post("/v1/chat/completions", {**body, "response_format": {"type": "text"}})
    assert res.status_code == 200, res.text
    assert "x-gateway-schema" not in res.headers
