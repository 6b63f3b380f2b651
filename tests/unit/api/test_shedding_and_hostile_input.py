"""Overload shedding, client disconnects and engine death, with the engine test double
(``tests/fake_engine.py``). The same paths run against the real engine in
``tests/integration/test_robustness.py`` (same paths, real engine)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from fastapi.testclient import TestClient

from gateway import errors
from gateway.api.disconnect import cancel_on_disconnect
from gateway.config import Settings
from gateway.server import create_app
from tests.adapter_factory import FAKE_BASE
from tests.fake_engine import FakeEngine
from tests.unit.conftest import running, started_client, wait_for


def _chat(client, **extra):
    body = {"model": "base", "messages": [{"role": "user", "content": "hi"}], **extra}
    return client.post("/v1/chat/completions", json=body)


def test_past_capacity_requests_are_shed_fast_with_retry_after(settings: Settings) -> None:
    settings = settings.model_copy(update={"max_num_seqs": 1, "max_waiting_requests": 1})
    engine = FakeEngine(hold=threading.Event())  # admitted requests stay in flight
    for client in started_client(settings, engine):
        results: list[int] = []

        def send(client=client, results=results) -> None:
            results.append(_chat(client).status_code)

        threads = [threading.Thread(target=send) for _ in range(2)]
        for t in threads:
            t.start()
        admission = client.app.state.services.chat.admission  # one runs, one waits a slot
        wait_for(lambda a=admission: a.in_flight == 2, lambda: "two requests not admitted")
        assert len(engine.calls) == 1 and admission.slots.num_waiting == 1
        shed = _chat(client)
        finished_before_shed = list(results)
        engine.hold.set()
        for t in threads:
            t.join()
        assert shed.status_code == 503 and shed.json()["error"]["code"] == "overloaded"
        assert shed.headers["Retry-After"] == "1"
        assert finished_before_shed == []  # refused at once, not queued behind them
        assert results == [200, 200]  # the admitted requests were not disturbed
        assert _chat(client).status_code == 200  # capacity is released afterwards
        metrics = client.get("/metrics").text
        assert 'code="overloaded"' in metrics
        assert 'gateway_rate_limited_total{reason="overloaded"' in metrics


def test_disconnect_cancels_the_work_and_reports_it() -> None:
    cancelled = asyncio.Event()

    async def work() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "done"

    class GoneRequest:
        calls = 0

        async def is_disconnected(self) -> bool:
            self.calls += 1
            return self.calls > 1

    async def go() -> None:
        with pytest.raises(errors.ClientDisconnected):
            await cancel_on_disconnect(GoneRequest(), work(), poll_s=0)  # type: ignore[arg-type]

    asyncio.run(go())
    assert cancelled.is_set()  # the 10 s job was cancelled, not awaited


def test_connected_client_gets_the_result() -> None:
    class Here:
        calls = 0

        async def is_disconnected(self) -> bool:
            self.calls += 1
            return False

    here = Here()

    async def work() -> int:
        while here.calls < 3:  # still running across several checks of the client
            await asyncio.sleep(0)
        return 7

    result = asyncio.run(cancel_on_disconnect(here, work(), poll_s=0))  # type: ignore[arg-type]
    assert result == 7


def test_engine_death_turns_ready_false_with_the_reason(settings: Settings) -> None:
    engine = FakeEngine()
    app = create_app(
        settings, lambda _: (engine, FAKE_BASE), exit_on_failure=False, engine_poll_s=0.001
    )
    with running(app) as client:
        assert client.get("/ready").status_code == 200
        engine.ready = False  # what VllmEngine reports once AsyncLLM.errored
        wait_for(lambda: app.state.engine_died, lambda: "the watchdog did not notice")
        res = client.get("/ready")
        assert res.status_code == 503
        assert res.json() == {
            "status": "not_ready",
            "reason": "the inference engine has stopped",
        }


HOSTILE = [
    ({"type": "string", "pattern": "^(a+)+$"}, "schema_unsupported"),
    ({"type": "string", "pattern": "(\\w+\\.)+\\d+"}, "schema_unsupported"),
    ({"type": "object", "patternProperties": {"^(x*)*$": {}}}, "schema_unsupported"),
    ({"type": "string", "pattern": "([a-z"}, "schema_invalid"),
    ({"type": "string", "pattern": "a" * 1001}, "schema_too_large"),
    ({"type": "string", "enum": [f"value-{i}" for i in range(200)]}, "schema_too_large"),
]


@pytest.mark.parametrize(("schema", "code"), HOSTILE)
def test_hostile_schemas_are_refused_before_the_engine(
    client, engine: FakeEngine, schema: dict, code: str
) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "h", "schema": schema}}
    res = _chat(client, response_format=fmt)
    assert res.status_code == 400 and res.json()["error"]["code"] == code
    assert engine.calls == []  # no engine time spent on it
    assert client.get("/ready").status_code == 200  # and nothing else disturbed


def test_safe_patterns_and_recursive_refs_are_accepted(client, engine: FakeEngine) -> None:
    tree = {"$defs": {"node": {"type": "object", "properties": {
        "name": {"type": "string", "pattern": "^[a-z]+(-[a-z]+)?$"},
        "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}},
        "required": ["name"]}}, "$ref": "#/$defs/node"}  # fmt: skip
    script_out = '{"name":"root","children":[{"name":"leaf"}]}'
    engine.outputs = [type(engine.outputs[0])(script_out)]
    fmt = {"type": "json_schema", "json_schema": {"name": "tree", "schema": tree}}
    res = _chat(client, response_format=fmt)
    assert res.status_code == 200, res.text
    assert engine.calls[-1].json_schema == tree


def test_megabyte_body_is_refused_with_413(client) -> None:
    huge = "x" * 1_100_000
    res = client.post("/v1/chat/completions", content=huge.encode(),
                      headers={"content-type": "application/json"})  # fmt: skip
    assert res.status_code == 413 and res.json()["error"]["code"] == "body_too_large"


@pytest.mark.parametrize(("fmt", "bad", "good"), [
    ("date-time", "yesterday", "2026-11-23T10:00:00Z"),
    ("uri", "not a uri", "https://example.com/x"),
    ("email", "nobody", "a@example.com"),
    ("uuid", "123", "0b7e5c9a-3f6e-4a59-9c1e-2f4b8d6a1e20"),
])  # fmt: skip
def test_formats_a_backend_may_ignore_are_enforced_by_validation(
    client, engine: FakeEngine, fmt: str, bad: str, good: str
) -> None:
    schema = {"type": "object", "properties": {"v": {"type": "string", "format": fmt}},
              "required": ["v"]}  # fmt: skip
    rf = {"type": "json_schema", "json_schema": {"name": "f", "schema": schema}}
    out = type(engine.outputs[0])
    engine.outputs = [out(f'{{"v":"{bad}"}}'), out(f'{{"v":"{bad}"}}')]
    res = _chat(client, response_format=rf)
    assert res.status_code == 502 and res.json()["error"]["code"] == "output_invalid"
    engine.outputs = [out(f'{{"v":"{good}"}}')]
    assert _chat(client, response_format=rf).status_code == 200


def test_an_unforeseen_failure_is_a_500_whose_id_is_logged(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    for client in started_client(settings, FakeEngine(fail_with=RuntimeError("a bug"))):
        quiet = TestClient(client.app, raise_server_exceptions=False)  # the app runs already
        res = _chat(quiet)
        metrics = client.get("/metrics").text
    assert res.status_code == 500
    error = res.json()["error"]
    assert error["code"] == "internal_error" and error["id"] in error["message"]
    [logged] = [r for r in caplog.records if error["id"] in r.getMessage()]
    assert logged.exc_info and str(logged.exc_info[1]) == "a bug"
    [counted] = [
        line for line in metrics.splitlines() if line.startswith("gateway_requests_total{")
    ]
    assert 'code="internal_error"' in counted and counted.endswith(" 1.0")  # by admission only
