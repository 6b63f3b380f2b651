"""Overload: open-loop load at 3x what the gateway sustains, for minutes.

Off by default (``-m long``); ``GATEWAY_OVERLOAD_SECONDS`` sets the duration (default
180). It starts its own gateway with a small queue so shedding starts early, and checks:
no crash, memory flat, every admitted request answered with schema-valid output (or a
typed error), and rejections are 503 ``overloaded`` with ``Retry-After``, answered
faster than admitted requests. It prints the figures as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import time
from collections import Counter
from pathlib import Path

import httpx
import jsonschema
import psutil
import pytest

from gateway_tools.bench.stats import percentile
from gateway_tools.launch import launch
from tests.integration.conftest import DEMO_ADAPTER

pytestmark = [pytest.mark.integration, pytest.mark.long]

SECONDS = float(os.environ.get("GATEWAY_OVERLOAD_SECONDS", "180"))
SCHEMA = {"type": "object", "properties": {"intent": {"enum": ["billing", "login", "other"]},
          "urgent": {"type": "boolean"}}, "required": ["intent", "urgent"],
          "additionalProperties": False}  # fmt: skip


def tree_rss_mb(pid: int) -> float:
    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


async def drive(url: str, rate: float, seconds: float) -> list[tuple[int, float, dict | None]]:
    rng = random.Random(0)
    body = {"model": "demo", "max_tokens": 40, "temperature": 0,
            "messages": [{"role": "user", "content": "I was charged twice, help"}],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "t", "schema": SCHEMA}}}  # fmt: skip
    results: list[tuple[int, float, dict | None]] = []

    async def one(client: httpx.AsyncClient) -> None:
        started = time.perf_counter()
        try:
            res = await client.post(url + "/v1/chat/completions", json=body)
            payload = res.json()
            status = res.status_code
            if status == 503:
                payload["retry_after"] = res.headers.get("Retry-After")
        except httpx.HTTPError:
            status, payload = 0, None
        results.append((status, time.perf_counter() - started, payload))

    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=1000)) as client:
        tasks, end = [], time.perf_counter() + seconds
        while time.perf_counter() < end:
            tasks.append(asyncio.create_task(one(client)))
            await asyncio.sleep(rng.expovariate(rate))
        await asyncio.gather(*tasks)
    return results


def test_three_times_sustainable_load_sheds_and_stays_correct(tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(DEMO_ADAPTER, store / "demo" / "v1")
    env = {"GATEWAY_MAX_NUM_SEQS": "8", "GATEWAY_MAX_WAITING_REQUESTS": "8"}
    with launch(tmp_path / "gw.log", adapters={"demo": "v1"}, store=store, env=env) as gw:
        # Sustainable rate, an upper estimate: 8 in the batch, each as fast as when calm.
        calm = asyncio.run(drive(gw.url, 1.0, 10))
        assert all(status == 200 for status, _, _ in calm)
        served_s = statistics_mean([s for st, s, _ in calm if st == 200])
        sustainable = 8 / served_s
        memory_before = tree_rss_mb(gw.pid)
        results = asyncio.run(drive(gw.url, 3 * sustainable, SECONDS))
        memory_after = tree_rss_mb(gw.pid)
        assert psutil.pid_exists(gw.pid) and httpx.get(gw.url + "/ready").status_code == 200
    codes = Counter(status for status, _, _ in results)
    ok = [(s, p) for st, s, p in results if st == 200]
    shed = [(s, p) for st, s, p in results if st == 503]
    for _, payload in ok:  # every admitted request answered correctly
        jsonschema.validate(json.loads(payload["choices"][0]["message"]["content"]), SCHEMA)
    others = {st: n for st, n in codes.items() if st not in (200, 503)}
    assert not others or set(others) <= {502}, codes  # 502 only as typed output errors
    assert shed, "3x the sustainable rate shed nothing"
    assert all(p["error"]["code"] == "overloaded" and p["retry_after"] for _, p in shed)
    shed_p95 = percentile([s for s, _ in shed], 0.95)
    ok_p50 = percentile([s for s, _ in ok], 0.5)
    assert shed_p95 < ok_p50  # refusing is faster than serving: nothing queues unbounded
    growth = memory_after - memory_before
    assert growth < 300, f"memory grew {growth:.0f} MB under overload"
    figures = {
        "seconds": SECONDS, "rate_per_s": round(3 * sustainable, 2), "requests": len(results),
        "codes": dict(codes), "served_p50_s": round(ok_p50, 3),
        "shed_p95_ms": round(1000 * shed_p95, 1), "memory_before_mb": round(memory_before),
        "memory_after_mb": round(memory_after),
    }  # fmt: skip
    print(json.dumps(figures))


def statistics_mean(values: list[float]) -> float:
    return sum(values) / len(values)
