"""What a client names (its schema) never reaches /metrics or a header unchecked: a bad
name is refused before the engine runs, inline schemas share one label value, and the
page stays readable whatever a label was given (engine test double)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.observability.metrics import INVALID, OTHER, GatewayMetrics, LabelFolder
from gateway.service.schemas import SchemaRegistry
from tests.fake_engine import FakeEngine
from tests.unit.conftest import script
from tests.unit.tenancy_setup import ALPHA, ANSWER, GAMMA, METRICS, auth

STRING = {"type": "string", "enum": ["ok"]}
HOSTILE_NAMES = ["\ud800", "日本", "a\nb", "a\r\nb", "x" * 65, "", "a b", "a.b"]


def chat(client: TestClient, key: str | None = None, **body: object):
    """The body as JSON text, so a lone surrogate travels as the escape ``\\ud800``."""
    full = {"model": "base", "messages": [{"role": "user", "content": "hi"}], **body}
    headers = {"Content-Type": "application/json", **(auth(key) if key else {})}
    return client.post("/v1/chat/completions", content=json.dumps(full), headers=headers)


def named(name: str, schema: dict | None = STRING) -> dict:
    spec = {"name": name} if schema is None else {"name": name, "schema": schema}
    return {"type": "json_schema", "json_schema": spec}


def scrape(client: TestClient) -> dict[str, list[dict[str, str]]]:
    res = client.get("/metrics", headers=auth(METRICS))
    assert res.status_code == 200
    return {
        family.name: [sample.labels for sample in family.samples]
        for family in text_string_to_metric_families(res.text)
    }


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("inline", [True, False])
@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_bad_schema_name_is_refused_before_the_engine(
    client: TestClient, engine: FakeEngine, name: str, inline: bool, stream: bool
) -> None:
    res = chat(client, response_format=named(name, STRING if inline else None), stream=stream)
    assert res.status_code == 400, res.text
    error = res.json()["error"]
    assert error["code"] == "invalid_request"
    # the body's own check refuses a lone surrogate anywhere, naming "response_format"
    assert error["param"] in ("response_format.json_schema.name", "response_format")
    assert len(error["message"]) < 120 and error["message"].isascii()
    assert "x" * 21 not in error["message"]  # an excerpt, never the whole value
    assert engine.calls == []


@pytest.mark.parametrize("stream", [False, True])
def test_a_name_at_the_limit_is_echoed_in_the_header(
    client: TestClient, engine: FakeEngine, stream: bool
) -> None:
    name = "A-z_9" + "x" * 59
    script(engine, '"ok"')
    res = chat(client, response_format=named(name), stream=stream)
    assert res.status_code == 200
    assert res.headers["x-gateway-schema"] == name


def test_a_hostile_name_leaves_metrics_readable(tenant_gateway) -> None:
    """Finding 1: one such request used to make every later scrape a 500."""
    client, engine, _ = tenant_gateway
    assert chat(client, ALPHA, response_format=named("\ud800")).status_code == 400
    assert chat(client, ALPHA, response_format=named("日本")).status_code == 400
    assert engine.calls == []
    assert "gateway_requests" in scrape(client)


def test_inline_names_share_one_label_and_cannot_squat_named_schemas(tenant_gateway) -> None:
    """Finding 4: a tenant's own names used to take every slot of the schema label."""
    client, engine, _ = tenant_gateway
    script(engine, '"ok"')
    for i in range(200):
        assert chat(client, ALPHA, response_format=named(f"squat{i}")).status_code == 200
    script(engine, ANSWER)
    assert chat(client, GAMMA).status_code == 200  # gamma's default: intent_classification
    counted = scrape(client)["gateway_requests"]
    schemas = {labels["schema"] for labels in counted}
    assert schemas == {"inline", "intent_classification"}
    gamma = [labels for labels in counted if labels["tenant"] == "gamma"]
    assert [labels["schema"] for labels in gamma] == ["intent_classification"]


@pytest.mark.parametrize("value", ["\ud800", "日本", "a\nb", 'a"b', "x" * 65, "a b"])
def test_a_value_that_is_not_a_plain_name_is_folded_and_takes_no_slot(value: str) -> None:
    folder = LabelFolder(max_values=1)
    assert folder.fold("schema", value) == INVALID
    assert folder.fold("schema", "support_ticket") == "support_ticket"
    assert folder.fold("schema", "another") == OTHER


def test_the_page_encodes_whatever_the_labels_were_given() -> None:
    """Defence in depth: even a value no caller should pass cannot break the page."""
    metrics = GatewayMetrics()
    labels = metrics.request_labels("\ud800", "adapter\n", "日本", "chat")
    metrics.requests.labels(**labels, outcome="error", code="x").inc()
    page = generate_latest(metrics.registry).decode("ascii")
    [sample] = [s for f in text_string_to_metric_families(page) for s in f.samples
                if s.name == "gateway_requests_total"]  # fmt: skip
    assert sample.labels["tenant"] == sample.labels["adapter"] == sample.labels["schema"]
    assert sample.labels["schema"] == INVALID


def test_a_schema_file_no_request_could_name_is_refused_at_start(tmp_path: Path) -> None:
    (tmp_path / "my schema.json").write_text(json.dumps(STRING))
    with pytest.raises(ValueError, match=r"my schema\.json"):
        SchemaRegistry(labels=("a",), schemas_dir=tmp_path, max_bytes=4096, max_depth=8)
