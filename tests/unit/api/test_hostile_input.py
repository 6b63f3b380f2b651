"""Regression tests for issue 21's findings 6 and 9 on chat and classify, with the engine
test double (``tests/fake_engine.py``): client input the gateway cannot serve is refused
with a 4xx and a documented code before it reaches the engine, and refusals are counted
once. Bodies are sent as raw JSON text, since a lone surrogate (``"\\ud800"``) is exactly
what an encoder would refuse to write."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from gateway.config import Settings
from tests.fake_engine import FakeEngine
from tests.unit.conftest import script, started_client
from tests.unit.tenancy_setup import ALPHA, ANSWER, auth

SURROGATE = '"\\ud800"'  # JSON text: the escape, not the character
MESSAGE = '{"role": "user", "content": "hi"}'
SCHEMA = '{"type": "string", "enum": ["ok"]}'


def post(client: TestClient, path: str, body: str | bytes, **headers: str):
    headers = {"content-type": "application/json", **headers}
    return client.post(path, content=body, headers=headers)


def chat_body(**fields: str) -> str:
    """A chat request with ``fields`` as raw JSON text."""
    values = {"model": '"base"', "messages": f"[{MESSAGE}]", **fields}
    return "{" + ", ".join(f'"{k}": {v}' for k, v in values.items()) + "}"


def counted(client: TestClient) -> dict[tuple[str, str], float]:
    """Requests counted, by (tenant, code): read from the registry, not from /metrics."""
    registry = client.app.state.services.metrics.registry
    totals: dict[tuple[str, str], float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if family.name == "gateway_requests" and sample.name.endswith("_total"):
                key = (sample.labels["tenant"], sample.labels["code"])
                totals[key] = totals.get(key, 0) + sample.value
    return totals


SURROGATES = [
    (chat_body(messages=f'[{{"role": "user", "content": {SURROGATE}}}]'), "messages.0.content"),
    (chat_body(messages=f'[{{"role": "user", "content": [{{"type": "text", "text": '
                        f'{SURROGATE}}}]}}]'), "messages.0.content.parts.0.text"),
    (chat_body(messages=f'[{{"role": "user", "content": "hi", "name": {SURROGATE}}}]'),
     "messages.0.name"),
    (chat_body(model=SURROGATE), "model"),
    (chat_body(stop=SURROGATE), "stop"),
    (chat_body(stop=f'["x", {SURROGATE}]'), "stop"),
    (chat_body(user=SURROGATE), "user"),
    (chat_body(metadata=f'{{"k": {SURROGATE}}}'), "metadata.k"),
    (chat_body(response_format='{"type": "json_schema", "json_schema": '
                               f'{{"name": {SURROGATE}, "schema": {SCHEMA}}}}}'),
     "response_format"),
    (chat_body(response_format='{"type": "json_schema", "json_schema": '
                               f'{{"name": "n", "schema": {{"enum": [{SURROGATE}]}}}}}}'),
     "response_format"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "param"), SURROGATES)
def test_lone_surrogates_in_chat_are_refused_before_the_engine(
    client: TestClient, engine: FakeEngine, body: str, param: str
) -> None:
    res = post(client, "/v1/chat/completions", body)
    assert res.status_code == 400, res.text
    error = res.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_request", param)
    assert "not valid Unicode text" in error["message"]
    assert engine.calls == []


@pytest.mark.parametrize(
    ("body", "param"),
    [(f'{{"text": "hi", "adapter": {SURROGATE}}}', "adapter"),
     (f'{{"text": "a {SURROGATE[1:]}}}', "text")],
)  # fmt: skip
def test_lone_surrogates_in_classify_are_refused(
    client: TestClient, engine: FakeEngine, body: str, param: str
) -> None:
    res = post(client, "/v1/classify", body)
    assert res.status_code == 400, res.text
    assert (res.json()["error"]["code"], res.json()["error"]["param"]) == ("invalid_request", param)
    assert engine.calls == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("stop", '""'), ("stop", '["END", ""]'), ("seed", str(2**64)), ("seed", str(2**63)),
     ("seed", "-1"), ("seed", str(-(2**63)))],
)  # fmt: skip
def test_stops_and_seeds_the_engine_cannot_take_are_refused(
    client: TestClient, engine: FakeEngine, field: str, value: str
) -> None:
    res = post(client, "/v1/chat/completions", chat_body(**{field: value}))
    assert res.status_code == 400, res.text
    assert (res.json()["error"]["code"], res.json()["error"]["param"]) == ("invalid_request", field)
    assert engine.calls == []


def test_the_largest_seed_stays_in_range_on_retry(client: TestClient, engine: FakeEngine) -> None:
    script(engine, '"no"', '"ok"')  # the first answer fails the schema: one retry
    fmt = f'{{"type": "json_schema", "json_schema": {{"name": "s", "schema": {SCHEMA}}}}}'
    res = post(client, "/v1/chat/completions", chat_body(seed=str(2**63 - 1), response_format=fmt))
    assert res.status_code == 200, res.text
    assert [call.seed for call in engine.calls] == [2**63 - 1, 0]  # vLLM seeds are int64


@pytest.mark.parametrize(
    ("message", "param"),
    [({"tool_calls": []}, "messages.0.tool_calls"),
     ({"function_call": None}, "messages.0.function_call"),
     ({"audio": None}, "messages.0.audio"),
     ({"refusal": "no"}, "messages.0.refusal"),
     ({"content": [{"type": "text", "text": "hi", "cache_control": {}}]},
      "messages.0.content.parts.0.cache_control")],
)  # fmt: skip
def test_unknown_or_unusable_message_fields_are_refused(
    client: TestClient, engine: FakeEngine, message: dict, param: str
) -> None:
    messages = [{"role": "assistant", "content": "hi", **message}]
    res = client.post("/v1/chat/completions", json={"model": "base", "messages": messages})
    assert res.status_code == 400, res.text
    assert (res.json()["error"]["code"], res.json()["error"]["param"]) == ("invalid_request", param)
    assert engine.calls == []


def test_an_answer_sent_back_as_history_is_accepted(client: TestClient) -> None:
    first = client.post("/v1/chat/completions", json={"model": "base", "messages": [
        {"role": "user", "content": "hi", "name": "ann"}]})  # fmt: skip
    history = [first.json()["choices"][0]["message"], {"role": "user", "content": "more"}]
    res = client.post("/v1/chat/completions", json={"model": "base", "messages": history})
    assert res.status_code == 200, res.text


@pytest.mark.parametrize(
    ("body", "message"),
    [(b'{"model": "\xff"}', "not valid UTF-8"),
     (b"[" * 2000 + b"]" * 2000, "nested too deeply")],
)  # fmt: skip
def test_unreadable_bodies_get_a_documented_code_and_are_counted(
    client: TestClient, body: bytes, message: str
) -> None:
    res = post(client, "/v1/chat/completions", body)
    assert res.status_code == 400
    assert res.json()["error"]["code"] == "invalid_request"
    assert message in res.json()["error"]["message"]
    assert counted(client) == {("open", "invalid_request"): 1}


def test_an_over_limit_chunked_body_is_413(client: TestClient, engine: FakeEngine) -> None:
    def chunks():  # no Content-Length: the limit is found while the body is read
        yield chat_body(messages=f'[{{"role": "user", "content": "{"x" * 5000}"}}]').encode()

    res = client.post("/v1/chat/completions", content=chunks(),
                      headers={"content-type": "application/json"})  # fmt: skip
    assert res.status_code == 413
    assert res.json()["error"]["code"] == "body_too_large"
    assert counted(client) == {("open", "body_too_large"): 1}
    assert engine.calls == []


def test_an_over_limit_chunked_upload_is_413(settings: Settings) -> None:
    admin = "admin-key-0123456789abcdef"
    settings = settings.model_copy(
        update={"admin_key": SecretStr(admin), "max_adapter_bytes": 2048}
    )
    for client in started_client(settings, FakeEngine()):
        chunks = iter([b"x" * 1500, b"x" * 1500])  # no Content-Length
        res = client.post("/admin/adapters/upload?name=up&version=v1", content=chunks,
                          headers=auth(admin))  # fmt: skip
        assert res.status_code == 413, res.text
        assert res.json()["error"]["code"] == "body_too_large"


def test_an_integer_python_will_not_read_is_a_400(settings: Settings) -> None:
    settings = settings.model_copy(update={"max_body_bytes": 10_000})
    for client in started_client(settings, FakeEngine()):
        res = post(client, "/v1/chat/completions", chat_body(seed="9" * 4400))  # > 4300 digits
        assert res.status_code == 400 and res.json()["error"]["code"] == "invalid_request"
        assert "integer too long" in res.json()["error"]["message"]


def test_a_long_number_is_not_echoed(client: TestClient) -> None:
    res = post(client, "/v1/chat/completions", chat_body(max_tokens="9" * 4000))
    assert res.status_code == 400 and res.json()["error"]["code"] == "max_tokens_exceeded"
    assert len(res.content) < 500


def test_an_unknown_field_is_echoed_only_in_part(client: TestClient) -> None:
    res = post(client, "/v1/chat/completions", chat_body(**{"k" * 3000: "1"}))
    assert res.status_code == 400
    error = res.json()["error"]
    assert error["param"].startswith("kkk") and len(error["param"]) < 100
    assert len(error["message"]) < 200


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/classify"])
def test_the_key_is_checked_before_the_body_is_read(tenant_gateway, path: str) -> None:
    client, engine, _ = tenant_gateway
    for headers in ({}, auth("not-a-key-0123456789abcdef")):
        res = post(client, path, b'{"model": ', **headers)
        assert res.status_code == 401, res.text
        assert res.json()["error"]["code"] == "invalid_api_key"
    res = post(client, path, b'{"model": ', **auth(ALPHA))
    assert res.status_code == 400 and res.json()["error"]["code"] == "invalid_request"
    # each counted once, the malformed body under the tenant whose key came with it
    assert counted(client) == {("unauthenticated", "invalid_api_key"): 2,
                               ("alpha", "invalid_request"): 1}  # fmt: skip
    assert engine.calls == []


def test_a_key_checked_first_is_not_checked_again(tenant_gateway) -> None:
    client, engine, _ = tenant_gateway
    script(engine, ANSWER)
    res = post(client, "/v1/classify", json.dumps({"text": "refund me"}), **auth(ALPHA))
    assert res.status_code == 200, res.text
    assert counted(client) == {("alpha", ""): 1}
