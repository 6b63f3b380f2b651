"""Deadlines over HTTP, with the engine test double: the ``X-Request-Timeout`` header,
504 ``deadline_exceeded``, the error event that ends a stream, the engine's abort and
the counter. The double stalls (``stall_at``) until cancelled, so a deadline always
passes there; where work must finish first, the deadline leaves it seconds."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from gateway.config import Settings
from tests.fake_engine import FakeEngine, ScriptedOutput
from tests.unit.conftest import started_client

CHAT = {"model": "base", "messages": [{"role": "user", "content": "hi"}]}
TIMEOUT = "X-Request-Timeout"


def deadline_hits(client: TestClient, adapter: str = "base") -> float:
    registry = client.app.state.services.metrics.registry
    labels = {"tenant": "open", "adapter": adapter}
    return registry.get_sample_value("gateway_deadline_exceeded_total", labels) or 0.0


def test_a_chat_request_past_its_deadline_gets_504_and_its_engine_work_stops(
    client: TestClient, engine: FakeEngine
) -> None:
    engine.stall_at = 0
    res = client.post("/v1/chat/completions", json=CHAT, headers={TIMEOUT: "0.05"})
    assert res.status_code == 504, res.text
    error = res.json()["error"]
    assert error["code"] == "deadline_exceeded" and error["retryable"] is True
    assert "0.05 s" in error["message"] and "X-Request-Timeout" in error["hint"]
    assert engine.aborted == [engine.calls[0].request_id] and engine.running == set()
    assert deadline_hits(client) == 1


def test_a_stream_past_its_deadline_ends_with_an_error_event(
    client: TestClient, engine: FakeEngine
) -> None:
    engine.outputs, engine.stall_at = [ScriptedOutput("hello world")], 1
    body = {**CHAT, "stream": True}
    res = client.post("/v1/chat/completions", json=body, headers={TIMEOUT: "2"})
    assert res.status_code == 200  # the first piece came in time; the stall did not
    events = [line[6:] for line in res.text.splitlines() if line.startswith("data: ")]
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == ""  # the role
    assert json.loads(events[1])["choices"][0]["delta"]["content"] == "hel"
    assert json.loads(events[-1])["error"]["code"] == "deadline_exceeded"
    assert "[DONE]" not in events
    assert engine.aborted == [engine.calls[0].request_id] and engine.running == set()
    assert deadline_hits(client) == 1


def test_classify_past_its_deadline_gets_504(client: TestClient, engine: FakeEngine) -> None:
    engine.stall_at = 0
    res = client.post("/v1/classify", json={"text": "refund me"}, headers={TIMEOUT: "0.05"})
    assert res.status_code == 504 and res.json()["error"]["code"] == "deadline_exceeded"
    assert engine.aborted == [engine.calls[0].request_id]
    assert deadline_hits(client) == 1


def test_the_servers_timeout_bounds_a_longer_one(settings: Settings) -> None:
    engine = FakeEngine(stall_at=0)
    short = settings.model_copy(update={"request_timeout_s": 0.05})
    for client in started_client(short, engine):
        res = client.post("/v1/chat/completions", json=CHAT, headers={TIMEOUT: "3600"})
        assert res.status_code == 504 and "deadline of 0.05 s" in res.json()["error"]["message"]
        res = client.post("/v1/chat/completions", json=CHAT)  # none asked: the server's
        assert res.status_code == 504
        assert len(engine.aborted) == 2


@pytest.mark.parametrize("value", ["30", "0.5", " 12.25 ", "999999999"])
def test_a_timeout_in_plain_seconds_is_accepted(client: TestClient, value: str) -> None:
    res = client.post("/v1/chat/completions", json=CHAT, headers={TIMEOUT: value})
    assert res.status_code == 200, res.text
    res = client.post("/v1/classify", json={"text": "refund me"}, headers={TIMEOUT: value})
    assert res.status_code == 200, res.text


@pytest.mark.parametrize(
    "value",
    ["0", "0.000", "-1", "", "abc", "1e3", "inf", "nan", "1.", ".5", "1,5", "1" * 12,
     "٣".encode()],  # an Arabic-Indic digit: a digit to Python, not to a header
)  # fmt: skip
def test_a_malformed_timeout_is_refused_before_the_engine(
    client: TestClient, engine: FakeEngine, value: str | bytes
) -> None:
    for path, body in (("/v1/chat/completions", CHAT), ("/v1/classify", {"text": "refund"})):
        res = client.post(path, json=body, headers={TIMEOUT: value})
        assert res.status_code == 400, (path, res.text)
        error = res.json()["error"]
        assert error["code"] == "invalid_request" and error["param"] == TIMEOUT
    assert engine.calls == []
    registry = client.app.state.services.metrics.registry
    refused = {"tenant": "open", "adapter": "unresolved", "schema": "none", "endpoint": "chat",
               "outcome": "error", "code": "invalid_request"}  # fmt: skip
    assert registry.get_sample_value("gateway_requests_total", refused) == 1  # counted once
