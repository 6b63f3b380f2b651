"""HTTP behaviour with the FakeEngine test double: shapes, codes, validation, retries."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from gateway.config import Settings
from tests.fake_engine import FakeEngine, ScriptedOutput
from tests.unit.conftest import script, started_client

SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["a", "b"]}},
    "required": ["label"],
    "additionalProperties": False,
}


def chat(client: TestClient, **extra: object):
    body = {"model": "base", "messages": [{"role": "user", "content": "hi"}], **extra}
    return client.post("/v1/chat/completions", json=body)


def schema_format(schema: dict = SCHEMA) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "t", "schema": schema, "strict": True}}


def test_plain_chat_has_openai_shape(client: TestClient, engine: FakeEngine) -> None:
    script(engine, "hello there")
    res = chat(client)
    assert res.status_code == 200
    body = res.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "hello there"
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 4
    assert res.headers["x-gateway-adapter"] == "base"


def test_adapter_is_routed_to_engine(client: TestClient, engine: FakeEngine) -> None:
    res = chat(client, model="tenant-a")
    assert res.status_code == 200
    assert engine.calls[-1].lora is not None and engine.calls[-1].lora.name == "tenant-a@v1"
    assert res.headers["x-gateway-adapter"] == "tenant-a"
    assert res.headers["x-gateway-adapter-version"] == "v1"


def test_schema_output_is_validated(client: TestClient, engine: FakeEngine) -> None:
    script(engine, '{"label":"a"}')
    res = chat(client, response_format=schema_format())
    assert res.status_code == 200
    assert engine.calls[-1].json_schema == SCHEMA


def test_invalid_output_is_retried_then_succeeds(client: TestClient, engine: FakeEngine) -> None:
    script(engine, '{"label":"zzz"}', '{"label":"b"}')
    res = chat(client, response_format=schema_format(), temperature=0)
    assert res.status_code == 200
    assert json.loads(res.json()["choices"][0]["message"]["content"]) == {"label": "b"}
    assert res.headers["x-gateway-attempts"] == "2"
    assert engine.calls[-1].temperature > 0  # a greedy retry would repeat the failure


def test_invalid_output_never_returns_200(client: TestClient, engine: FakeEngine) -> None:
    script(engine, '{"label":"zzz"}')
    res = chat(client, response_format=schema_format())
    assert res.status_code == 502
    assert res.json()["error"]["code"] == "output_invalid"


def test_truncated_output_is_typed_error(client: TestClient, engine: FakeEngine) -> None:
    script(engine, ('{"label":"a', "length"))
    res = chat(client, response_format=schema_format())
    assert res.status_code == 502
    assert res.json()["error"]["code"] == "output_truncated"
    assert res.json()["error"]["retryable"] is True


def test_json_object_must_be_an_object(client: TestClient, engine: FakeEngine) -> None:
    script(engine, "[1, 2]")
    res = chat(client, response_format={"type": "json_object"})
    assert res.json()["error"]["code"] == "output_invalid"


def test_stream_ends_with_error_event_when_output_invalid(
    client: TestClient, engine: FakeEngine
) -> None:
    script(engine, '{"label":"nope"}')
    res = chat(client, response_format=schema_format(), stream=True)
    assert res.status_code == 200
    events = [line[6:] for line in res.text.splitlines() if line.startswith("data: ")]
    assert "[DONE]" not in events
    assert json.loads(events[-1])["error"]["code"] == "output_invalid"


def test_stream_success_has_done_and_usage(client: TestClient, engine: FakeEngine) -> None:
    script(engine, '{"label":"a"}')
    res = chat(
        client,
        response_format=schema_format(),
        stream=True,
        stream_options={"include_usage": True},
    )
    events = [line[6:] for line in res.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert json.loads(text) == {"label": "a"}
    assert chunks[-1]["usage"]["completion_tokens"] > 0


def test_min_tokens_reaches_the_engine_and_may_not_exceed_max_tokens(
    client: TestClient, engine: FakeEngine
) -> None:
    """vLLM's extension, used by the benchmarks for fixed-length generations."""
    script(engine, "hello there")
    assert chat(client, max_tokens=8, min_tokens=8).status_code == 200
    assert (engine.calls[-1].min_tokens, engine.calls[-1].max_tokens) == (8, 8)
    assert chat(client).status_code == 200 and engine.calls[-1].min_tokens == 0
    res = chat(client, max_tokens=4, min_tokens=5)
    assert res.status_code == 400 and res.json()["error"]["param"] == "min_tokens"
    assert chat(client, min_tokens=-1).status_code == 400


def test_named_schema_reference(client: TestClient, engine: FakeEngine) -> None:
    script(engine, '{"intent":"billing_inquiry","confidence":0.9,"requires_human_agent":false}')
    fmt = {"type": "json_schema", "json_schema": {"name": "intent_classification"}}
    res = chat(client, response_format=fmt)
    assert res.status_code == 200
    assert engine.calls[-1].json_schema["properties"]["intent"]["enum"][0] == "password_reset"


def test_error_codes(client: TestClient) -> None:
    cases = [
        (chat(client, model="nope"), 404, "adapter_not_found"),
        (chat(client, max_tokens=101), 400, "max_tokens_exceeded"),
        (chat(client, n=2), 400, "invalid_request"),
        (chat(client, guided_json={}), 400, "invalid_request"),
        (chat(client, response_format={"type": "xml"}), 400, "invalid_request"),
        (chat(client, response_format=schema_format({"type": 12})), 400, "schema_invalid"),
        (
            chat(client, response_format=schema_format({"$ref": "https://x.example/s.json"})),
            400,
            "schema_unsupported",
        ),
        (
            chat(client, response_format={"type": "json_schema", "json_schema": {"name": "x"}}),
            404,
            "schema_not_found",
        ),
        (
            chat(client, response_format=schema_format({"enum": ["v" * 50] * 42})),
            400,
            "schema_too_large",
        ),
        (
            chat(client, messages=[{"role": "user", "content": "x" * 1100}]),
            400,
            "context_length_exceeded",
        ),
    ]
    for res, status, code in cases:
        assert (res.status_code, res.json()["error"]["code"]) == (status, code), res.json()


def test_legacy_guided_field_names_the_replacement(client: TestClient) -> None:
    message = chat(client, guided_json={"type": "object"}).json()["error"]["message"]
    assert "response_format" in message


def test_malformed_and_oversized_bodies(client: TestClient) -> None:
    bad = client.post(
        "/v1/chat/completions",
        content=b'{"model": "base",',
        headers={"content-type": "application/json"},
    )
    assert bad.status_code == 400
    assert "not valid JSON" in bad.json()["error"]["message"]
    huge = client.post(
        "/v1/chat/completions", content=b"x" * 5000, headers={"content-type": "application/json"}
    )
    assert huge.status_code == 413
    assert huge.json()["error"]["code"] == "body_too_large"


def test_models_lists_base_and_adapters(client: TestClient) -> None:
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids == ["base", "tenant-a"]


def test_not_ready_is_503_with_retry_after(client: TestClient, engine: FakeEngine) -> None:
    engine.ready = False
    res = chat(client)
    assert res.status_code == 503
    assert res.json()["error"]["code"] == "engine_unavailable"
    assert "retry-after" in res.headers
    assert client.get("/ready").status_code == 503
    assert client.get("/health").status_code == 200


def test_admission_error_in_stream_is_a_normal_error_response(
    client: TestClient, engine: FakeEngine
) -> None:
    from gateway import errors

    engine.fail_with = errors.SchemaUnsupported("backend cannot enforce uniqueItems")
    res = chat(client, response_format=schema_format(), stream=True)
    assert res.status_code == 400
    assert res.json()["error"]["code"] == "schema_unsupported"
    counted = [line for line in client.get("/metrics").text.splitlines()
               if line.startswith("gateway_requests_total{")]  # fmt: skip
    assert [line.rsplit(" ", 1)[1] for line in counted] == ["1.0"]  # by admission, once


def test_developer_role_and_text_parts(client: TestClient, engine: FakeEngine) -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}],
        },
    ]
    res = chat(client, messages=messages, stop="END", seed=7)
    assert res.status_code == 200
    call = engine.calls[-1]
    assert (call.stop, call.seed) == (("END",), 7)


def test_schema_header_names_the_schema(client: TestClient, engine: FakeEngine) -> None:
    script(engine, '{"label":"a"}')
    assert chat(client, response_format=schema_format()).headers["x-gateway-schema"] == "t"


def test_streamed_success_is_recorded_as_success_not_cancelled(
    client: TestClient, engine: FakeEngine
) -> None:
    """The SSE body reads the service's generator to its end, so the admission closes
    normally (outcome success) instead of being finalised later as a cancellation."""
    script(engine, '{"label":"a"}', "ok")
    for fmt in (schema_format(), None):
        extra = {"response_format": fmt} if fmt else {}
        assert chat(client, stream=True, **extra).status_code == 200
    lines = client.get("/metrics").text.splitlines()
    totals = [line for line in lines if line.startswith("gateway_requests_total{")]
    success = [line for line in totals if 'outcome="success"' in line]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in success) == 2
    assert not any('code="cancelled"' in line for line in totals)
    running = [line for line in lines if line.startswith("gateway_requests_running{")]
    assert running and all(line.endswith(" 0.0") for line in running)


def test_a_one_step_answer_streams_as_one_write(client: TestClient, engine: FakeEngine) -> None:
    script(engine, "ok")  # under 3 characters: the test double sends it in one chunk
    with client.stream("POST", "/v1/chat/completions", json={
        "model": "base", "messages": [{"role": "user", "content": "hi"}], "stream": True,
        "stream_options": {"include_usage": True},
    }) as res:  # fmt: skip
        writes = list(res.iter_raw())
    assert len(writes) == 1
    events = [e for e in writes[0].decode().split("\n\n") if e]
    assert events[0].startswith('data: {"id"') and events[-1] == "data: [DONE]"
    assert len(events) == 5  # role, content, finish, usage, [DONE]


W4A16 = {
    "method": "compressed-tensors", "weight_bits": 4, "group_size": 32,
    "linear_layers": 120, "quantized_layers": 120, "kernels": {"CPUWNA16LinearKernel": 120},
}  # fmt: skip


def test_models_and_build_info_say_what_the_engine_quantized(settings: Settings) -> None:
    engine = FakeEngine(quantization=W4A16)
    for client in started_client(settings, engine):
        base = client.get("/v1/models").json()["data"][0]
        assert base["quantization"]["quantized_layers"] == 120
        assert base["quantization"]["kernels"] == {"CPUWNA16LinearKernel": 120}
        metrics = client.get("/metrics").text
        info = next(line for line in metrics.splitlines() if line.startswith("gateway_build_info"))
        for label in ('quantization="compressed-tensors"', 'weight_bits="4"',
                      'group_size="32"', 'quantized_layers="120"'):  # fmt: skip
            assert label in info
        adapter = client.get("/v1/models").json()["data"][1]
        assert adapter.get("quantization") is None  # the base card carries it, once


def test_an_unquantized_base_says_none(client: TestClient) -> None:
    base = client.get("/v1/models").json()["data"][0]
    assert base["quantization"]["method"] == "none"


def test_a_grammar_the_engine_cannot_compile_is_a_typed_400_and_is_not_sent_again(
    client: TestClient, engine: FakeEngine
) -> None:
    # What vLLM reports when the backend fails or times out building the grammar: the
    # request finishes with reason "error" before any output.
    engine.outputs = [ScriptedOutput("", finish_reason="error")]
    res = chat(client, response_format=schema_format())
    assert res.status_code == 400, res.text
    error = res.json()["error"]
    assert error["code"] == "schema_compile_failed" and error["retryable"] is False
    assert error["param"] == "response_format.json_schema.schema" and "xgrammar" in error["hint"]
    assert len(engine.calls) == 1  # no retry: a retry would compile it again
    script(engine, '{"label":"a"}')
    again = chat(client, response_format=schema_format())
    assert again.status_code == 400 and again.json()["error"]["code"] == "schema_compile_failed"
    assert "earlier request" in again.json()["error"]["message"]
    assert len(engine.calls) == 1  # refused before the engine
    other = {**SCHEMA, "properties": {"label": {"type": "string", "enum": ["a", "c"]}}}
    assert chat(client, response_format=schema_format(other)).status_code == 200
    registry = client.app.state.services.metrics.registry
    failed = registry.get_sample_value(
        "gateway_requests_total",
        {"tenant": "open", "adapter": "base", "schema": "inline", "endpoint": "chat",
         "outcome": "error", "code": "schema_compile_failed"},
    )  # fmt: skip
    assert failed == 2


def test_an_engine_error_finish_is_never_an_answer(client: TestClient, engine: FakeEngine) -> None:
    engine.outputs = [ScriptedOutput("partial", finish_reason="error")]
    res = chat(client)
    assert res.status_code == 500 and res.json()["error"]["code"] == "engine_error"
    assert res.json()["error"]["id"].startswith("err-")


def test_admission_tells_its_listener_when_requests_start_and_end(
    client: TestClient, engine: FakeEngine
) -> None:
    """What pauses a fine-tuning worker while requests are in flight."""
    seen: list[str] = []

    class Listener:
        def started(self) -> None:
            seen.append("started")

        def finished(self) -> None:
            seen.append("finished")

    client.app.state.services.chat.admission.load_listener = Listener()
    script(engine, "hello")
    assert chat(client).status_code == 200
    engine.outputs = [ScriptedOutput("", finish_reason="error")]
    assert chat(client).status_code == 500  # however it ends
    assert seen == ["started", "finished"] * 2
