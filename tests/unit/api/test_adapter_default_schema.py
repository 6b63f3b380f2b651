"""A structured adapter's chat requests are constrained to the schema its manifest records
unless they ask for something else, and the answer says where its schema came from."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.config import Settings
from gateway.errors import AdapterInvalid
from gateway.registry.store import AdapterStore, StoreLimits
from tests.adapter_factory import FAKE_BASE, make_peft_folder
from tests.fake_engine import FakeEngine
from tests.unit.conftest import script, started_client

TICKET = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": ["SHIPPING", "BILLING"]},
        "urgency": {"type": "string", "enum": ["LOW", "HIGH"]},
    },
    "required": ["category", "urgency"],
    "additionalProperties": False,
}
OTHER = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
VALID = '{"category":"SHIPPING","urgency":"HIGH"}'


def structured(store: Path, schema: object = TICKET) -> Path:
    return make_peft_folder(
        store / "ticket" / "v1",
        extra={"schema": {"name": "ticket", "source": "inferred", "json": schema}},
    )


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient, FakeEngine]]:
    store = tmp_path / "store"
    make_peft_folder(store / "plain" / "v1")
    structured(store)
    settings = Settings(
        adapter_store=store, adapters={"plain": "v1", "ticket": "v1"}, max_tokens_cap=100,
        default_max_tokens=50, max_model_len=1024, output_retries=0,
    )  # fmt: skip
    engine = FakeEngine()
    for client in started_client(settings, engine):
        yield client, engine


def chat(client: TestClient, model: str, **extra: object):
    body = {"model": model, "messages": [{"role": "user", "content": "parcel late"}], **extra}
    return client.post("/v1/chat/completions", json=body)


def test_no_response_format_gets_the_adapter_schema(app) -> None:
    client, engine = app
    script(engine, VALID)
    res = chat(client, "ticket")
    assert res.status_code == 200, res.text
    assert engine.calls[-1].json_schema == TICKET
    assert res.headers["x-gateway-schema"] == "ticket"
    assert res.headers["x-gateway-schema-source"] == "adapter-default"
    assert json.loads(res.json()["choices"][0]["message"]["content"])["urgency"] == "HIGH"


def test_an_answer_outside_the_adapter_schema_is_not_a_success(app) -> None:
    client, engine = app
    script(engine, '{"category":"SHIPPING","urgency":"SOON"}')
    res = chat(client, "ticket")
    assert res.status_code == 502
    assert res.json()["error"]["code"] == "output_invalid"


def test_response_format_still_wins(app) -> None:
    client, engine = app
    script(engine, "free prose")
    res = chat(client, "ticket", response_format={"type": "text"})
    assert res.status_code == 200 and engine.calls[-1].json_schema is None
    assert "x-gateway-schema" not in res.headers
    script(engine, '{"x":3}')
    other = {"type": "json_schema", "json_schema": {"name": "other", "schema": OTHER}}
    res = chat(client, "ticket", response_format=other)
    assert res.status_code == 200, res.text
    assert engine.calls[-1].json_schema == OTHER
    assert res.headers["x-gateway-schema"] == "other"
    assert res.headers["x-gateway-schema-source"] == "request"


def test_an_adapter_without_a_schema_stays_unconstrained(app) -> None:
    client, engine = app
    script(engine, "free prose")
    res = chat(client, "plain")
    assert res.status_code == 200 and engine.calls[-1].json_schema is None
    assert "x-gateway-schema-source" not in res.headers


@pytest.mark.parametrize("schema", [["not", "an", "object"], "text"])
def test_a_malformed_manifest_schema_makes_the_version_invalid(tmp_path: Path, schema) -> None:
    structured(tmp_path / "store", schema)
    limits = StoreLimits(FAKE_BASE.fingerprint, 16, frozenset({"q_proj", "v_proj"}), 10**9)
    with pytest.raises(AdapterInvalid, match=r"schema\.json must be an object"):
        AdapterStore(tmp_path / "store", limits).inspect("ticket", "v1")
