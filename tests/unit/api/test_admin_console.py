"""What the admin API gives the console: the metrics page and the playground with the
admin key only, and the listing's evaluation numbers and schema names."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.conftest import script
from tests.unit.tenancy_setup import ADMIN, ALPHA, ANSWER, METRICS, auth

CHAT = {
    "model": "tenant-a",
    "messages": [{"role": "user", "content": "refund me"}],
    "response_format": {"type": "json_schema", "json_schema": {"name": "intent_classification"}},
}
PLAYGROUND = "/admin/playground/chat/completions"


def counted(text: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


@pytest.mark.parametrize("key", [None, ALPHA, METRICS])
def test_only_the_admin_key_opens_the_console_routes(tenant_gateway, key: str | None) -> None:
    client, _, _ = tenant_gateway
    headers = auth(key) if key else {}
    for res in (client.get("/admin/metrics", headers=headers),
                client.post(PLAYGROUND, json=CHAT, headers=headers)):  # fmt: skip
        assert res.status_code == 401, res.text
        assert res.json()["error"]["code"] == "invalid_api_key"


def test_the_playground_answers_as_the_console_tenant(tenant_gateway) -> None:
    client, engine, _ = tenant_gateway
    script(engine, ANSWER)
    res = client.post(PLAYGROUND, json=CHAT, headers=auth(ADMIN))
    assert res.status_code == 200, res.text
    assert json.loads(res.json()["choices"][0]["message"]["content"]) == json.loads(ANSWER)
    assert res.headers["x-gateway-adapter"] == "tenant-a"
    assert res.headers["x-gateway-adapter-version"] == "v1"
    assert res.headers["x-gateway-attempts"] == "1"
    page = client.get("/admin/metrics", headers=auth(ADMIN))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain")
    requests = "gateway_requests_total"
    assert counted(page.text, requests, tenant="console", adapter="tenant-a") == 1
    assert page.text == client.get("/metrics", headers=auth(METRICS)).text


def test_the_playground_refuses_a_bad_schema_with_its_reason(tenant_gateway) -> None:
    client, engine, _ = tenant_gateway
    body = {
        **CHAT,
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "playground",
                "schema": {"type": "object", "properties": {"a": {"type": 5}}},
            },
        },
    }
    res = client.post(PLAYGROUND, json=body, headers=auth(ADMIN))
    assert res.status_code == 400, res.text
    assert res.json()["error"]["code"] == "schema_invalid"
    assert engine.calls == []
    unreadable = client.post(PLAYGROUND, json={"model": "tenant-a"}, headers=auth(ADMIN))
    assert unreadable.status_code == 400  # no messages: refused before the route runs
    page = client.get("/admin/metrics", headers=auth(ADMIN)).text
    requests = "gateway_requests_total"
    assert counted(page, requests, tenant="console", code="schema_invalid") == 1
    assert counted(page, requests, tenant="console", code="invalid_request") == 1
    assert counted(page, requests, tenant="console", outcome="success") == 0


def test_the_listing_carries_evaluation_numbers_and_schema_names(tenant_gateway) -> None:
    client, _, tmp_path = tenant_gateway
    manifest_path = tmp_path / "store" / "tenant-a" / "v1" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["evaluation"] = {"validation": {
        "items": 48, "accuracy": 0.9167, "macro_f1": 0.9158, "ece": 0.03, "errors": {},
        "top_confusions": [], "auroc": True}}  # fmt: skip
    manifest["calibration"] = {"temperature": 1.25}
    manifest_path.write_text(json.dumps(manifest))
    body = client.get("/admin/adapters", headers=auth(ADMIN)).json()
    versions = {(a["name"], v["version"]): v for a in body["adapters"] for v in a["versions"]}
    assert versions[("tenant-a", "v1")]["evaluation"] == {
        "items": 48, "accuracy": 0.9167, "macro_f1": 0.9158, "ece": 0.03, "temperature": 1.25
    }  # fmt: skip
    assert versions[("tenant-b", "v1")]["evaluation"] is None  # trained without evaluation
    assert body["base_model"] == "base"
    assert "intent_classification" in body["schemas"]
