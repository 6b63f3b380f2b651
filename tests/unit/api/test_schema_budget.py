"""The compile budget over HTTP (tenants mode, engine test double): a tenant's new inline
schemas past its budget get 429 ``schema_budget_exceeded``; seen schemas stay free."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.unit.tenancy_setup import ADMIN, auth

ANSWER = '{"ok":true}'


def schema_request(variant: int) -> dict[str, Any]:
    """A chat request whose inline schema differs per ``variant`` (another digest)."""
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}},
              "required": ["ok"], "description": f"variant {variant}"}  # fmt: skip
    return {
        "model": "base",
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
    }


def new_tenant(client: TestClient, name: str, **spec: Any) -> str:
    res = client.put(f"/admin/tenants/{name}", json=spec, headers=auth(ADMIN))
    assert res.status_code == 200, res.text
    return res.json()["api_key"]


def sample(client: TestClient, name: str, **labels: str) -> float:
    registry = client.app.state.services.metrics.registry
    return registry.get_sample_value(name, labels) or 0.0


def test_new_schemas_past_the_tenants_budget_get_429_and_seen_ones_stay_free(
    tenant_gateway,
) -> None:
    client, engine, _ = tenant_gateway
    engine.outputs[0].text = ANSWER
    strict = new_tenant(client, "strict", schema_compile_budget_per_minute=1)
    other = new_tenant(client, "roomy")  # the server's budget (30)

    def chat(key: str, variant: int):
        return client.post("/v1/chat/completions", json=schema_request(variant), headers=auth(key))

    assert chat(other, 1).status_code == 200  # schema 1 is now known to the server
    assert chat(strict, 2).status_code == 200  # strict's one new schema this minute
    refused = chat(strict, 3)
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["code"] == "schema_budget_exceeded" and error["retryable"] is True
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert len(engine.calls) == 2  # the refused one never reached the engine
    for variant in (1, 2, 1):  # seen before: free, whoever sent it first
        assert chat(strict, variant).status_code == 200
    assert chat(other, 3).status_code == 200  # another tenant's budget is its own
    assert chat(strict, 3).status_code == 200  # and now schema 3 is seen: free
    assert sample(client, "gateway_rate_limited_total", tenant="strict",
                  reason="schema_budget") == 1  # fmt: skip
    # first tokens of new-schema requests: one per schema the server had not seen
    first_tokens = "gateway_new_schema_first_token_seconds_count"
    assert sample(client, first_tokens, tenant="roomy") == 2
    assert sample(client, first_tokens, tenant="strict") == 1


def test_a_request_refused_by_another_limit_spends_no_budget(tenant_gateway) -> None:
    client, engine, _ = tenant_gateway
    engine.outputs[0].text = ANSWER
    key = new_tenant(client, "slow", schema_compile_budget_per_minute=2, requests_per_minute=1)
    headers = auth(key)
    body = schema_request(1)
    assert client.post("/v1/chat/completions", json=body, headers=headers).status_code == 200
    limited = client.post("/v1/chat/completions", json=schema_request(2), headers=headers)
    assert limited.json()["error"]["code"] == "rate_limited"  # the request rate, not the budget
    budget = client.app.state.services.chat.admission.schema_budget
    assert budget.is_new(budget_digest(client, 2))  # not remembered ...
    slow = client.app.state.services.tenants.get("slow")
    budget.check(slow, "another-new-digest")  # ... nor charged: one of two units is left


def budget_digest(client: TestClient, variant: int) -> str:
    schemas = client.app.state.services.schemas
    spec = schema_request(variant)["response_format"]["json_schema"]
    return schemas.resolve(spec["name"], spec["schema"]).digest
