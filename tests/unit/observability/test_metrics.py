"""Prometheus metrics over HTTP (engine test double): what was sent is what is counted."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from gateway import errors
from gateway.observability.metrics import OTHER, LabelFolder
from tests.unit.conftest import script
from tests.unit.tenancy_setup import ALPHA, ANSWER, BETA, METRICS, auth, classify


def samples(client) -> dict[tuple[str, frozenset], float]:
    res = client.get("/metrics", headers=auth(METRICS))
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(res.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in found.items() if n == name and set(labels.items()) <= ls)


def test_requests_are_counted_per_tenant_adapter_and_outcome(tenant_gateway) -> None:
    client, engine, _ = tenant_gateway
    script(engine, ANSWER)
    for _ in range(2):
        assert classify(client, ALPHA, adapter="tenant-a").status_code == 200
    assert classify(client, BETA).status_code == 200
    script(engine, "not json", "still not json")  # a legacy adapter still writes JSON
    assert classify(client, ALPHA, adapter="tenant-a").status_code == 502
    found = samples(client)
    ok = {"endpoint": "classify", "outcome": "success"}
    assert value(found, "gateway_requests_total", tenant="alpha", adapter="tenant-a", **ok) == 2
    assert value(found, "gateway_requests_total", tenant="beta", adapter="tenant-b", **ok) == 1
    assert value(found, "gateway_requests_total", tenant="alpha", code="output_invalid") == 1
    assert value(found, "gateway_request_duration_seconds_count", tenant="alpha") == 3
    assert value(found, "gateway_time_to_first_token_seconds_count", tenant="beta") == 1
    assert value(found, "gateway_structured_output_failures_total", tenant="alpha") == 2
    assert value(found, "gateway_structured_output_retries_total", tenant="alpha") == 1
    assert value(found, "gateway_generated_tokens_total", tenant="beta") > 0
    assert value(found, "gateway_schema_compilations_total") >= 1
    assert value(found, "gateway_schema_cache_hits_total") >= 2
    assert value(found, "gateway_requests_running", tenant="alpha") == 0
    assert value(found, "gateway_adapter_events_total", event="loads") == 2
    assert value(found, "gateway_adapters_resident", where="loaded") == 2
    assert value(found, "gateway_build_info", base_model="fake-base") == 1


def test_rate_limits_and_keys_stay_out_of_labels(tenant_gateway) -> None:
    client, engine, _ = tenant_gateway
    script(engine, ANSWER)
    for _ in range(4):
        classify(client, BETA)
    found = samples(client)
    assert value(found, "gateway_rate_limited_total", tenant="beta", reason="requests") == 1
    assert value(found, "gateway_requests_total", tenant="beta", outcome="rejected") == 1
    text = client.get("/metrics", headers=auth(METRICS)).text
    assert BETA not in text and ALPHA not in text and "refund me" not in text


def test_admin_unload_counts_and_label_values_stay_bounded(tenant_gateway) -> None:
    client, _, _ = tenant_gateway
    client.post("/admin/adapters/tenant-a/unload", headers=auth("admin-key-0123456789abcdef"))
    assert value(samples(client), "gateway_adapter_events_total", event="unloads") == 1
    folder = LabelFolder(max_values=2)
    assert [folder.fold("tenant", t) for t in ("a", "b", "c", "a", None)] == [
        "a", "b", OTHER, "a", OTHER,
    ]  # fmt: skip


def test_engine_stats_are_bridged_with_request_labels(tenant_gateway) -> None:
    from gateway.engine.types import EngineStats

    client, engine, _ = tenant_gateway
    script(engine, ANSWER)
    assert classify(client, ALPHA, adapter="tenant-a").status_code == 200
    finished = engine.calls[-1].request_id
    assert engine.on_stats is not None
    engine.on_stats(EngineStats(3, 2, 0.25, 1, ((finished, 0.5), ("unknown-id", 0.1))))
    found = samples(client)
    assert value(found, "gateway_engine_requests", state="running") == 3
    assert value(found, "gateway_engine_requests", state="waiting") == 2
    assert value(found, "gateway_engine_kv_cache_usage_ratio") == 0.25
    assert value(found, "gateway_adapters_resident", where="active") == 1
    queued = "gateway_queue_time_seconds_sum"
    assert value(found, queued, tenant="alpha", adapter="tenant-a") == 0.5
    assert value(found, queued, tenant="other") == 0.1


def test_routers_find_vllms_series_with_adapters_named_as_clients_call_them(
    tenant_gateway,
) -> None:
    """What llm-d's scorers read (names and labels as vLLM's own loggers write them)."""
    from gateway.engine.types import EngineStats

    client, engine, _ = tenant_gateway
    assert engine.on_stats is not None
    engine.on_stats(EngineStats(3, 2, 0.25, 2, (), ("tenant-a@v1", "tenant-b@v2"), ()))
    engine.on_stats(EngineStats(1, 4, 0.5, 1, (), ("tenant-a@v1",), ("tenant-b@v1",)))
    found = samples(client)
    model = {"model_name": "base", "engine": "0"}
    assert value(found, "vllm:num_requests_running", **model) == 1
    assert value(found, "vllm:num_requests_waiting", **model) == 4
    assert value(found, "vllm:kv_cache_usage_perc", **model) == 0.5
    info = [ls for (n, ls) in found if n == "vllm:lora_requests_info"]
    assert len(info) == 1  # only the newest label set stays
    assert dict(info[0]) == {"max_lora": "8", "running_lora_adapters": "tenant-a",
                             "waiting_lora_adapters": "tenant-b"}  # fmt: skip
    engine.on_stats(EngineStats(1, 0, 0.5, 1, (), ("tenant-b@v2",), ()))  # not current
    stamped = {ls: v for (n, ls), v in samples(client).items() if n == "vllm:lora_requests_info"}
    assert [dict(ls)["running_lora_adapters"] for ls in stamped] == ["tenant-b@v2"]
    # the same label set on the next step: still one series, its timestamp renewed
    ((labels, first_stamp),) = stamped.items()
    time.sleep(0.01)
    engine.on_stats(EngineStats(2, 0, 0.25, 1, (), ("tenant-b@v2",), ()))
    found = samples(client)
    assert [ls for (n, ls) in found if n == "vllm:lora_requests_info"] == [labels]
    assert found[("vllm:lora_requests_info", labels)] > first_stamp
    assert value(found, "vllm:num_requests_running", **model) == 2
    assert value(found, "vllm:kv_cache_usage_perc", **model) == 0.25
    # and back to an earlier one: the series follows
    engine.on_stats(EngineStats(1, 4, 0.5, 1, (), ("tenant-a@v1",), ("tenant-b@v1",)))
    info = [ls for (n, ls) in samples(client) if n == "vllm:lora_requests_info"]
    assert len(info) == 1 and dict(info[0])["running_lora_adapters"] == "tenant-a"


def test_refusals_before_admission_are_counted_once(tenant_gateway) -> None:
    client, engine, _ = tenant_gateway
    assert classify(client, None).status_code == 401
    assert classify(client, BETA, adapter="tenant-a").status_code == 403
    assert client.post("/v1/classify", json={"txt": "x"}, headers=auth(ALPHA)).status_code == 400
    script(engine, "not json")  # a legacy adapter still writes JSON
    assert classify(client, ALPHA, adapter="tenant-a").status_code == 502  # counted once
    found = samples(client)
    total = "gateway_requests_total"
    assert value(found, total, tenant="unauthenticated", code="invalid_api_key") == 1
    assert value(found, total, tenant="beta", code="adapter_forbidden") == 1
    assert value(found, total, tenant="alpha", code="invalid_request") == 1
    assert value(found, total, tenant="alpha", code="output_invalid") == 1


def test_each_request_is_counted_once_wherever_it_ends(tenant_gateway) -> None:
    """Before admission (the API counts it), at admission and in the engine (admission
    counts both): one request, one count, whichever component ended it."""
    client, engine, _ = tenant_gateway
    script(engine, ANSWER)
    responses = [classify(client, BETA) for _ in range(4)]  # 3 a minute: the 4th is refused
    responses.append(classify(client, BETA, adapter="tenant-a"))  # not beta's adapter
    engine.fail_with = errors.EngineFailed("boom", error_id="err-test")
    responses.append(classify(client, ALPHA))
    assert [r.status_code for r in responses] == [200, 200, 200, 429, 403, 500]
    assert responses[-1].json()["error"]["id"] == "err-test"
    found = samples(client)
    total = "gateway_requests_total"
    assert value(found, total) == len(responses)
    assert value(found, total, tenant="beta", outcome="success") == 3
    assert value(found, total, tenant="beta", outcome="rejected", code="rate_limited") == 1
    assert value(found, total, tenant="beta", code="adapter_forbidden") == 1
    assert value(found, total, tenant="alpha", code="engine_error") == 1
