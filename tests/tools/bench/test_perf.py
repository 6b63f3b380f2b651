"""The performance harness's own logic: workload, load drivers, statistics, targets,
the vLLM server's command line and the CPU runtime environment. (The engine runs in
``gateway bench perf`` itself; nothing here starts one.)"""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import httpx
import pytest

from gateway.engine import cpu_runtime
from gateway.engine.vllm_engine import EngineOptions
from gateway_tools.bench.perf import report
from gateway_tools.bench.perf.extras import counter_total
from gateway_tools.bench.perf.loadgen import Record, closed_loop, open_loop, send_chat
from gateway_tools.bench.perf.stats import merge, summarise
from gateway_tools.bench.perf.vllm_side import vllm_serve_argv
from gateway_tools.bench.perf.workload import Cell, Workload, cell_matrix
from gateway_tools.bench.stats import percentile

SCHEMA = {"type": "object", "properties": {"intent": {"enum": ["a", "b"]}}}


def workload(**kw) -> Workload:
    base = dict(prompts=("p0", "p1", "p2"), adapter_names=tuple(f"t{i}" for i in range(8)),
                system_prompt="sys", schema=SCHEMA, max_tokens=32,
                long_prompts=("long one\nlong two", "long three"))  # fmt: skip
    return Workload(**{**base, **kw})


def test_cells_cover_the_matrix_once_with_an_overhead_cell_first() -> None:
    cells = cell_matrix([1, 2, 8], [1, 4, 16], [2.0], waves=3, min_requests=8)
    keys = [c.key for c in cells]
    assert len(keys) == len(set(keys)) == 1 + 3 * 3 * 3 + 3 + 1
    assert keys[0] == "free-a1-c1-t1" and cells[0].max_tokens == 1
    prefill = [c for c in cells if c.long_prompt]
    assert [c.key for c in prefill] == [f"free-a{n}-c1-t1-long" for n in (1, 2, 8)]
    assert all(c.max_tokens == 1 and c.concurrency == 1 and c.requests == 8 for c in prefill)
    assert "schema-a8-c16" in keys and "free-a2-c4" in keys and keys[-1] == "schema-a8-r2"
    big = next(c for c in cells if c.key == "schema-a8-c16")
    assert big.requests == 48  # waves x concurrency
    assert next(c for c in cells if c.key == "schema-a1-c1").requests == 8  # the floor
    fixed = [c for c in cells if c.fixed]  # same-length generations for LoRA / base
    assert [c.key for c in fixed][:2] == ["free-a1-c1-fixed", "free-a1-c4-fixed"]
    assert all(not c.schema and c.max_tokens is None for c in fixed) and len(fixed) == 9


def test_requests_mix_adapters_round_robin_and_match_across_sides() -> None:
    wl = workload()
    cell = Cell(adapters=2, schema=True, concurrency=4, requests=8)
    models = [wl.chat_body(cell, i)["model"] for i in range(4)]
    assert models == ["t0", "t1", "t0", "t1"]
    body = wl.chat_body(cell, 4)
    assert body == wl.chat_body(cell, 4)  # deterministic: every side sees the same request
    assert body["response_format"]["json_schema"]["schema"] == SCHEMA
    assert body["messages"][0] == {"role": "system", "content": "sys"}
    assert body["stream"] and body["stream_options"] == {"include_usage": True}
    free = wl.chat_body(Cell(1, False, 1, 1, max_tokens=1), 0)
    assert "response_format" not in free and free["max_tokens"] == 1
    assert "min_tokens" not in free
    fixed = wl.chat_body(Cell(1, False, 1, 1, fixed=True), 0)
    assert fixed["min_tokens"] == fixed["max_tokens"] == wl.max_tokens
    assert Workload.from_json(wl.to_json()) == wl


def test_open_loop_arrivals_are_seeded_poisson() -> None:
    wl = workload()
    cell = Cell(8, True, 0, 400, rate=4.0)
    offsets = wl.arrivals(cell)
    assert offsets == wl.arrivals(cell) and offsets[0] == 0
    assert all(b >= a for a, b in itertools.pairwise(offsets))
    mean_gap = offsets[-1] / (len(offsets) - 1)
    assert 0.2 < mean_gap < 0.3  # 1 / rate, within sampling noise of 400 draws


def test_closed_loop_keeps_exactly_concurrency_in_flight() -> None:
    in_flight = peak = 0
    sent: list[int] = []

    async def send(i: int) -> Record:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        sent.append(i)
        for _ in range(1 + i % 3):  # uneven lengths, so workers finish out of order
            await asyncio.sleep(0)
        in_flight -= 1
        return Record(True, 0.01, 0.001, 5)

    ticks: list[None] = []
    records = asyncio.run(closed_loop(send, 20, 4, lambda: ticks.append(None)))
    assert sorted(sent) == list(range(20)) and len(records) == 20 == len(ticks)
    assert peak == 4


def test_open_loop_does_not_wait_for_slow_responses() -> None:
    sent: list[int] = []
    all_sent = asyncio.Event()

    async def send(i: int) -> Record:
        sent.append(i)
        if len(sent) == 4:
            all_sent.set()
        await all_sent.wait()  # no answer comes before every request has been sent
        return Record(True, 0.05)

    async def drive() -> list[Record]:  # a driver that waited for answers would time out
        offsets = [0.0, 0.001, 0.002, 0.003]
        return await asyncio.wait_for(open_loop(send, offsets, lambda: None), 10)

    assert len(asyncio.run(drive())) == 4


def test_summaries_pool_raw_samples_not_percentiles() -> None:
    fast = [Record(True, 0.1, 0.01, 11) for _ in range(9)]
    slow = [Record(True, 1.0, 0.5, 11), Record(False, 2.0, error="schema_violation")]
    one = summarise(fast, wall_s=1.0)
    two = summarise(slow, wall_s=2.0)
    assert one["requests_per_s"] == 9 and one["output_tokens_per_s"] == 99
    assert one["tpot_p50_ms"] == pytest.approx(9.0)  # (100 ms - 10 ms) / 10 tokens
    assert two["errors"] == 1 and two["error_codes"] == {"schema_violation": 1}
    pooled = merge([one, two])
    assert pooled["requests"] == 11 and pooled["errors"] == 1 and pooled["rounds"] == 2
    assert pooled["requests_per_s"] == pytest.approx(10 / 3, abs=1e-3)
    # True p95 over the 10 good latencies, not the mean of the two runs' p95s.
    assert pooled["latency_p95_ms"] == pytest.approx(1000 * percentile([0.1] * 9 + [1.0], 0.95))


def _sse(events: list[object]) -> bytes:
    return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"


def test_send_chat_reads_ttft_usage_and_typed_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body["model"] == "bad":
            return httpx.Response(404, json={"error": {"code": "adapter_not_found"}})
        if body["model"] == "mid-stream":
            return httpx.Response(200, content=_sse([{"error": {"code": "schema_violation"}}]))
        events = [
            {"choices": [{"delta": {"role": "assistant"}}]},
            {"choices": [{"delta": {"content": "{"}}]},
            {"choices": [], "usage": {"completion_tokens": 7}},
        ]
        return httpx.Response(200, content=_sse(events))

    async def go() -> list[Record]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return [
                await send_chat(client, "http://x/v1/chat/completions", {"model": m})
                for m in ("ok", "bad", "mid-stream")
            ]

    ok, bad, mid = asyncio.run(go())
    assert ok.ok and ok.output_tokens == 7 and ok.ttft is not None
    assert not bad.ok and bad.error == "adapter_not_found"
    assert not mid.ok and mid.error == "schema_violation"


def _pooled(rps: dict[str, float], p50: dict[str, float], rss: dict[str, float]) -> dict:
    cells = {}
    for side in ("bare", "vllm", "gateway"):
        base = {"requests_per_s": rps[side], "output_tokens_per_s": 10 * rps[side],
                "latency_p50_ms": p50[side], "latency_p95_ms": 2 * p50[side],
                "tpot_p50_ms": 20.0, "rss_mb": rss[side], "errors": 0}  # fmt: skip
        cells[side] = {
            "schema-a8-c16": base,
            "schema-a1-c16": {**base, "requests_per_s": rps[side] * 1.1},
            "free-a1-c1-t1": base,
            "schema-a1-c1": base,
            "free-a1-c1": {**base, "tpot_p50_ms": 20.0},
        }
    return cells


OVERHEAD = {"pairs": 600, "failed_pairs": 0, "limit_ms": 5.0, "median_ms": 3.1, "ci_low_ms": 1.9,
            "ci_high_ms": 5.6, "verdict": "undecided", "more_pairs": 1100}  # fmt: skip


def test_targets_report_met_and_missed_honestly() -> None:
    pooled = _pooled(
        rps={"bare": 2.0, "vllm": 1.8, "gateway": 1.96},
        p50={"bare": 100.0, "vllm": 110.0, "gateway": 103.0},
        rss={"bare": 1000.0, "vllm": 1100.0, "gateway": 1400.0},
    )
    extras = {"schema_cache": {"hit": {"compilations_delta": 0.0}}}
    rows = {t["target"].split(",")[0]: t for t in report.targets(pooled, extras, 8, 16, None)}
    assert rows["gateway/bare requests/s"]["measured"] == 0.98
    assert rows["gateway/bare requests/s"]["met"] is True
    assert rows["gateway/vllm-serve requests/s"]["met"] is True
    unpaired = report.targets(pooled, extras, 8, 16, None)
    assert next(t for t in unpaired if "paired" in t["target"])["verdict"] == "not measured"
    assert rows["gateway resident memory over bare engine at schema-a8-c16"]["met"] is False
    targets = report.targets(pooled, extras, 8, 16, OVERHEAD)
    eight = next(t for t in targets if "8 adapters" in t["target"])
    assert eight["measured"] == pytest.approx(0.909, abs=1e-3) and eight["met"] is False  # < 0.95
    paired = next(t for t in targets if "paired" in t["target"])
    assert paired["measured"] == "3.1 [1.9, 5.6]" and paired["met"] is None
    result = {"command": "gateway bench perf", "pooled": pooled,
              "comparisons": report.comparisons(pooled), "targets": targets}  # fmt: skip
    text = report.markdown(result)
    assert "| schema-a8-c16 |" in text and "**no**" in text and "n/a" in text
    assert "| undecided, about 1100 more pairs needed |" in text


def test_vllm_serve_gets_the_gateways_engine_arguments() -> None:
    options = EngineOptions(
        model_path="/m", quantization="int8_per_channel_weight_only", dtype="bfloat16",
        max_model_len=2048, gpu_memory_utilization=0.3, max_num_seqs=32, max_loras=8,
        max_cpu_loras=16, max_lora_rank=16, structured_backend="xgrammar",
        disable_any_whitespace=True, enforce_eager=False, seed=0, grouped_lora=True,
    )  # fmt: skip
    argv = vllm_serve_argv(options, {"t0": "/s/t0/v1", "t1": "/s/t1/v1"}, 8123)
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    flags = dict(itertools.pairwise(argv))
    assert flags["--quantization"] == "int8_per_channel_weight_only"
    assert flags["--max-loras"] == "8" and flags["--max-lora-rank"] == "16"
    assert json.loads(flags["--structured-outputs-config"]) == {
        "backend": "xgrammar", "disable_any_whitespace": True}  # fmt: skip
    assert argv[-2:] == ["t0=/s/t0/v1", "t1=/s/t1/v1"] and "--enable-lora" in argv
    assert "--enforce-eager" not in argv


def test_cpu_runtime_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tcmalloc = tmp_path / "libtcmalloc_minimal.so.4"
    tcmalloc.write_bytes(b"")
    iomp = tmp_path / "libiomp5.so"
    monkeypatch.setattr(cpu_runtime, "_SEARCH", {"tcmalloc": (str(tcmalloc),), "iomp": ("/no",)})
    monkeypatch.setenv("LD_PRELOAD", "/x/libfoo.so")
    assert cpu_runtime.runtime_env("none", "vllm") == {}
    env = cpu_runtime.runtime_env("tcmalloc+iomp", threads_bind="0-1")
    assert env["LD_PRELOAD"] == f"{tcmalloc}:/x/libfoo.so"  # kept what was there
    assert env["GATEWAY_CPU_PRELOAD_MISSING"] == "iomp"
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "0-1"
    monkeypatch.setenv("LD_PRELOAD", str(tcmalloc))
    assert "LD_PRELOAD" not in cpu_runtime.runtime_env("tcmalloc", "vllm")  # already preloaded
    iomp.write_bytes(b"")
    monkeypatch.setattr(
        cpu_runtime, "_SEARCH", {"tcmalloc": (str(tcmalloc),), "iomp": (str(iomp),)}
    )
    assert cpu_runtime.runtime_env("iomp", "vllm")["LD_PRELOAD"] == f"{iomp}:{tcmalloc}"
    with pytest.raises(ValueError):
        cpu_runtime.runtime_env("jemalloc")


def test_thread_binding_uses_every_core_only_on_small_machines() -> None:
    assert cpu_runtime.cpu_list([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert cpu_runtime.cpu_list([3]) == "3"
    assert cpu_runtime.resolve_threads_bind("auto", [0, 1]) == "0-1"
    assert cpu_runtime.resolve_threads_bind("auto", list(range(16))) is None  # vLLM's own
    assert cpu_runtime.resolve_threads_bind("all", list(range(16))) == "0-15"
    assert cpu_runtime.resolve_threads_bind("vllm", [0, 1]) is None
    assert cpu_runtime.resolve_threads_bind("nobind", [0, 1]) == "nobind"


def test_counters_sum_every_label_set_of_the_exposition() -> None:
    text = (
        "# HELP gateway_schema_compilations_total Schemas compiled.\n"
        "# TYPE gateway_schema_compilations_total counter\n"
        'gateway_schema_compilations_total{backend="xgrammar"} 2.0\n'
        'gateway_schema_compilations_total{backend="outlines"} 1.0\n'
        'gateway_schema_compilations_created{backend="xgrammar"} 1.7e+09\n'
    )
    assert counter_total(text, "gateway_schema_compilations_total") == 3.0
    assert counter_total(text, "gateway_schema_cache_hits_total") == 0.0
