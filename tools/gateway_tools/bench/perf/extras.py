"""Gateway-only measurements taken inside a gateway round: hot-swap latency and what a
schema costs on a compile-cache miss against a hit (and against no schema at all)."""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway_tools.bench.hotswap import swap_loop
from gateway_tools.bench.perf.loadgen import send_chat
from gateway_tools.bench.perf.sides import ADMIN_KEY, METRICS_KEY, TENANT_KEY
from gateway_tools.bench.perf.workload import SOURCE_ADAPTER, Cell, Workload
from gateway_tools.bench.stats import ms, percentile


def hot_swap(url: str, store: Path, name: str, swaps: int) -> dict[str, Any]:
    with (
        httpx.Client(timeout=120, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as admin,
        httpx.Client(timeout=120, headers={"Authorization": f"Bearer {TENANT_KEY}"}) as chat,
    ):
        return swap_loop(admin, chat, url, store, name, SOURCE_ADAPTER, swaps)


def counter_total(metrics: str, name: str) -> float:
    """A counter's total over every label set, from Prometheus text exposition."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == name
    )


def schema_cache(url: str, workload: Workload, repeats: int) -> dict[str, Any]:
    return asyncio.run(_schema_cache(url, workload, repeats))


async def _schema_cache(url: str, workload: Workload, repeats: int) -> dict[str, Any]:
    """Sequential requests (concurrency 1, one adapter, one prompt) in three kinds:
    a schema never seen before (a miss in the gateway and in the engine's grammar
    cache), the same schema again (a hit), and no schema. Compile and hit counters
    come from the gateway's own /metrics, so "no recompilation" is counted, not assumed."""
    endpoint = url + "/v1/chat/completions"
    headers = {"Authorization": f"Bearer {TENANT_KEY}"}
    cell = Cell(1, True, 1, 1)
    async with httpx.AsyncClient(timeout=300, headers=headers) as client:

        async def counters() -> dict[str, float]:
            scraper = {"Authorization": f"Bearer {METRICS_KEY}"}
            text = (await client.get(url + "/metrics", headers=scraper)).text
            return {
                "compilations": counter_total(text, "gateway_schema_compilations_total"),
                "cache_hits": counter_total(text, "gateway_schema_cache_hits_total"),
            }

        async def phase(kind: str) -> dict[str, Any]:
            before = await counters()
            ttfts, latencies, errors = [], [], 0
            for _ in range(repeats):
                body = workload.chat_body(cell, 0)
                if kind == "miss":
                    schema = copy.deepcopy(workload.schema)
                    schema["description"] = f"nonce {uuid.uuid4().hex}"  # a new digest
                    body["response_format"]["json_schema"]["schema"] = schema
                elif kind == "none":
                    body.pop("response_format")
                record = await send_chat(client, endpoint, body)
                if not record.ok or record.ttft is None:
                    errors += 1
                    continue
                ttfts.append(record.ttft)
                latencies.append(record.latency)
            after = await counters()
            return {
                "requests": repeats,
                "errors": errors,
                "ttft_p50_ms": ms(percentile(ttfts, 0.5), 2),
                "latency_p50_ms": ms(percentile(latencies, 0.5), 2),
                **{f"{k}_delta": after[k] - before[k] for k in after},
            }

        await phase("hit")  # warm: the schema is compiled once before the timed phases
        result = {kind: await phase(kind) for kind in ("miss", "hit", "none")}
    ttft = {kind: result[kind]["ttft_p50_ms"] for kind in ("miss", "hit", "none")}
    result["miss_minus_hit_ttft_ms"] = _difference(ttft["miss"], ttft["hit"])
    result["hit_minus_none_ttft_ms"] = _difference(ttft["hit"], ttft["none"])
    result["in_process_hit_us"] = _in_process_hit_us(workload.schema)
    return result


def _difference(a: float | None, b: float | None) -> float | None:
    """``a - b``, or ``None`` when a phase had no successful request to measure."""
    return None if a is None or b is None else round(a - b, 2)


def _in_process_hit_us(schema: dict[str, Any], rounds: int = 2000) -> float:
    """The gateway's own per-request schema work on a cache hit, timed in this process
    with the gateway's ``SchemaRegistry`` (size and depth checks, digest, lookup)."""
    from gateway.service.schemas import SchemaRegistry

    registry = SchemaRegistry(labels=("a", "b"), schemas_dir=None, max_bytes=64_000, max_depth=32)
    registry.resolve("bench", schema)
    started = time.perf_counter()
    for _ in range(rounds):
        registry.resolve("bench", schema)
    return round(1e6 * (time.perf_counter() - started) / rounds, 2)
