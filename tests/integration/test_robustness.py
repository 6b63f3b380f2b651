"""Overload, disconnects and SIGTERM against the real gateway and engine.

The disconnect test uses the shared session gateway; SIGTERM needs a gateway of its own,
since it ends it. Engine death (each engine process killed) is ``test_crash.py``'s.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import psutil
import pytest

from gateway_tools.launch import RunningGateway, launch
from tests.integration.conftest import DEMO_ADAPTER, METRICS_KEY, Gateway

pytestmark = pytest.mark.integration

DIGITS = {"type": "integer", "minimum": 0, "maximum": 9}


def long_schema(items: int) -> dict:
    """A schema that forces about ``2 * items`` output tokens: a long, known-length job."""
    array = {"type": "array", "items": DIGITS, "minItems": items, "maxItems": items}
    return {"type": "object", "properties": {"d": array}, "required": ["d"],
            "additionalProperties": False}  # fmt: skip


def long_body(items: int, max_tokens: int) -> dict:
    return {
        "model": "base",
        "messages": [{"role": "user", "content": "List digits as JSON."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "digits", "schema": long_schema(items)}},
    }  # fmt: skip


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_disconnected_clients_have_their_engine_work_aborted(gateway: Gateway) -> None:
    before = gateway.get("/metrics", key=METRICS_KEY).text
    cancelled_before = metric(before, "gateway_requests_total", code="cancelled")

    body = json.dumps(long_body(200, 500)).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n"
        f"Authorization: Bearer {gateway.key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    host, port = gateway.url.removeprefix("http://").split(":")

    def give_up() -> None:
        # A socket of our own, closed for sure: the client leaves after 2 s of ~15 s.
        with socket.create_connection((host, int(port)), timeout=2) as sock:
            sock.sendall(head + body)
            with pytest.raises(TimeoutError):
                sock.recv(1)

    threads = [threading.Thread(target=give_up) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 10
    while True:
        text = gateway.get("/metrics", key=METRICS_KEY).text
        if metric(text, "gateway_requests_total", code="cancelled") >= cancelled_before + 2:
            break
        assert time.monotonic() < deadline, "the disconnects were not noticed"
        time.sleep(0.2)
    assert metric(text, "gateway_requests_running", tenant="alpha") == 0
    # The engine's own scheduler agrees: during a short request made now, it runs only
    # that one (the two abandoned ones would make it 3 had they not been aborted).
    short = gateway.post("/v1/chat/completions", long_body(3, 20))
    assert short.status_code == 200
    text = gateway.get("/metrics", key=METRICS_KEY).text
    assert metric(text, "gateway_engine_requests", state="running") <= 1


def test_requests_past_their_deadline_get_504_and_their_engine_work_is_aborted(
    gateway: Gateway,
) -> None:
    text = gateway.get("/metrics", key=METRICS_KEY).text
    expired_before = metric(text, "gateway_deadline_exceeded_total", tenant="alpha")
    headers = {"Authorization": f"Bearer {gateway.key}", "X-Request-Timeout": "1.5"}
    answers: list[httpx.Response] = []

    def ask() -> None:  # ~15 s of decoding, allowed 1.5 s
        url = gateway.url + "/v1/chat/completions"
        answers.append(httpx.post(url, json=long_body(200, 500), headers=headers, timeout=60))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    # A stream past its deadline ends with an error event and no [DONE].
    stream_body = {**long_body(200, 500), "stream": True}
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=stream_body,
                      headers=headers, timeout=60) as stream:  # fmt: skip
        assert stream.status_code == 200
        events = [line for line in stream.iter_lines() if line.startswith("data: ")]
    for t in threads:
        t.join()
    for answer in answers:
        assert answer.status_code == 504, answer.text
        assert answer.json()["error"]["code"] == "deadline_exceeded"
    assert events[-1] != "data: [DONE]"
    assert json.loads(events[-1].removeprefix("data: "))["error"]["code"] == "deadline_exceeded"
    text = gateway.get("/metrics", key=METRICS_KEY).text
    assert metric(text, "gateway_deadline_exceeded_total", tenant="alpha") == expired_before + 3
    assert metric(text, "gateway_requests_running", tenant="alpha") == 0
    # The engine dropped all three: during a short request made now it runs only that one.
    short = gateway.post("/v1/chat/completions", long_body(3, 20))
    assert short.status_code == 200
    text = gateway.get("/metrics", key=METRICS_KEY).text
    assert metric(text, "gateway_engine_requests", state="running") <= 1


@pytest.fixture
def own_gateway(tmp_path: Path) -> Iterator[RunningGateway]:
    store = tmp_path / "store"
    shutil.copytree(DEMO_ADAPTER, store / "demo" / "v1")
    env = {"GATEWAY_SHUTDOWN_GRACE_S": "60", "GATEWAY_ENGINE_FAILURE_EXIT_S": "3",
           "GATEWAY_MAX_TOKENS_CAP": "512", "GATEWAY_MAX_MODEL_LEN": "1024"}  # fmt: skip
    with launch(tmp_path / "gw.log", adapters={"demo": "v1"}, store=store, env=env) as gw:
        yield gw


def test_sigterm_finishes_in_flight_requests_then_exits_cleanly(
    own_gateway: RunningGateway, tmp_path: Path
) -> None:
    gw = own_gateway
    proc = psutil.Process(gw.pid)
    answers: list[httpx.Response] = []
    body = long_body(40, 200)
    worker = threading.Thread(
        target=lambda: answers.append(
            httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=120)
        )
    )
    worker.start()
    deadline = time.monotonic() + 60
    while metric(httpx.get(gw.url + "/metrics").text, "gateway_requests_running") < 1:
        assert time.monotonic() < deadline, "the request was never admitted"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # while it is in flight
    worker.join(timeout=120)
    code = proc.wait(timeout=90)
    assert answers and answers[0].status_code == 200, answers and answers[0].text
    content = answers[0].json()["choices"][0]["message"]["content"]
    jsonschema.validate(json.loads(content), long_schema(40))  # finished, and whole
    # uvicorn re-raises the signal after its graceful shutdown, so the status is -15; the
    # log proves the shutdown ran (lifespan completed, engine shut down) rather than a kill.
    assert code in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in gw.log.read_text()
    with pytest.raises(httpx.TransportError):  # nothing listens any more
        httpx.get(gw.url + "/health", timeout=2)
    registry = json.loads((tmp_path / "store" / "registry.json").read_text())
    assert "demo" in json.dumps(registry)  # the registry survived, parseable


def test_real_world_schemas_are_served_valid_or_refused_never_wrong(gateway: Gateway) -> None:
    """A sample of JSONSchemaBench through the real gateway: no 200 may fail its schema."""
    import asyncio

    from gateway_tools.bench import schemabench as sb

    items = [(sub, name, schema) for sub in sb.SUBSETS for name, schema in sb.load(sub, 4)]
    rows = asyncio.run(sb.run_schemas_with_headers(gateway.url, items, 4, 128, gateway.headers))
    summary = sb.summarise(rows)["all"]
    assert summary["schemas"] == 12
    assert summary["bug"] == 0, [r for r in rows if r["outcome"] == "bug"]
    assert summary["served"] >= 1  # most of these are simple; the path is exercised
