"""The serving-overhead target (added p50 <= 5 ms, gateway vs bare engine, 1-token
answers at concurrency 1) decided with statistics instead of one p50 against another.

The gateway and the bare engine run side by side on the same LoRA path, each with a
2 GiB KV cache so that two engines fit in memory (a 1-token request at concurrency 1
uses a few blocks of it). Pair ``k`` sends request ``k`` of the 1-token cell to both, one
after the other; the order alternates between pairs, so neither side always runs right
after the other, and a short pause between requests lets the idle engine's OpenMP
threads stop spinning (vLLM sets ``KMP_BLOCKTIME`` to 5 ms). Slow drift of the machine
then hits both halves of a pair alike. The paired differences (gateway minus bare) get a
seeded bootstrap interval of their median, and the verdict follows from the interval.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from multiprocessing.connection import Client, Connection
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx
from tqdm import tqdm

from gateway_tools.bench.perf.loadgen import Record, send_chat
from gateway_tools.bench.perf.sides import TENANT_KEY, Bench, gateway_serve, start_bare, warm_up
from gateway_tools.bench.perf.workload import Cell, Workload
from gateway_tools.bench.provenance import CpuTimes, share_from
from gateway_tools.bench.stats import bootstrap_median, decide_at_most, ms, percentile
from gateway_tools.launch import LaunchError, stop

LIMIT_MS = 5.0
PAIRS = 600  # about 4 minutes here; the verdict says when more are needed
KV_CACHE_GIB = "2"  # VLLM_CPU_KVCACHE_SPACE for both engines of this phase
PAUSE_S = 0.02
RESAMPLES = 2000
SEED = 0


def overhead_cell(pairs: int) -> Cell:
    """The 1-token cell of the matrix (one adapter, no schema), ``pairs`` requests long."""
    return Cell(1, False, 1, pairs, max_tokens=1)


def measure(bench: Bench, pairs: int, grouped_lora: bool) -> dict[str, Any]:
    bench = replace(bench, env={**bench.env, "VLLM_CPU_KVCACHE_SPACE": KV_CACHE_GIB})
    cell = overhead_cell(pairs)
    socket = bench.work / "bare-paired.sock"
    socket.unlink(missing_ok=True)
    started = time.perf_counter()
    cpu_start = CpuTimes.read()
    proc, _, log = start_bare(bench, [cell], "paired", grouped_lora, serve=socket)
    try:
        with (
            gateway_serve(bench, bench.work / "gateway-paired.log", grouped_lora) as (url, _),
            _connect(proc, socket, log) as conn,
        ):
            gateway, bare = asyncio.run(_alternate(url, bench.workload, cell, conn))
            conn.send_bytes(json.dumps({"stop": True}).encode())
        stop(proc, signal_first=False)  # it shuts its engine down and exits
    finally:
        if proc.poll() is None:
            stop(proc)
    result = summarise_pairs(gateway, bare)
    result.update(grouped_lora=grouped_lora, kv_cache_gib=int(KV_CACHE_GIB),
                  wall_s=round(time.perf_counter() - started, 1))  # fmt: skip
    result["cpu_share"] = share_from(cpu_start)  # the differences grow with steal
    return result


def summarise_pairs(gateway: list[Record], bare: list[Record]) -> dict[str, Any]:
    """Differences of the pairs where both requests succeeded, their bootstrap interval
    and the verdict on the 5 ms target; the differences are kept, so the interval can be
    recomputed from perf.json."""
    diffs = [1000 * (g.latency - b.latency) for g, b in zip(gateway, bare, strict=True)
             if g.ok and b.ok]  # fmt: skip
    result: dict[str, Any] = {
        "pairs": len(diffs),
        "failed_pairs": len(gateway) - len(diffs),
        "limit_ms": LIMIT_MS,
        "order": "alternating (gateway first in even pairs)",
        "gateway_p50_ms": ms(percentile([g.latency for g in gateway if g.ok], 0.5), 2),
        "bare_p50_ms": ms(percentile([b.latency for b in bare if b.ok], 0.5), 2),
        "diffs_ms": [round(d, 3) for d in diffs],
    }
    if not diffs:
        return {**result, "verdict": None}
    interval = bootstrap_median(diffs, RESAMPLES, 0.95, SEED)
    verdict = decide_at_most(interval, LIMIT_MS, len(diffs))
    return {
        **result,
        "median_ms": round(interval.median, 2),
        "ci_low_ms": round(interval.low, 2),
        "ci_high_ms": round(interval.high, 2),
        "confidence": interval.confidence,
        "resamples": interval.resamples,
        "seed": interval.seed,
        "verdict": verdict.outcome,
        "more_pairs": verdict.more_samples,
    }


def _connect(proc: Popen, socket: Path, log: Path, timeout_s: float = 900) -> Connection:
    """Wait for the bare engine to warm up and listen, then connect."""
    started = time.perf_counter()
    while not socket.exists():
        if proc.poll() is not None:
            raise LaunchError(f"bare engine exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        if time.perf_counter() - started > timeout_s:
            raise LaunchError(f"bare engine not listening in {timeout_s:.0f}s")
        time.sleep(0.5)
    return Client(str(socket), family="AF_UNIX")


async def _alternate(
    url: str, workload: Workload, cell: Cell, conn: Connection
) -> tuple[list[Record], list[Record]]:
    endpoint = url + "/v1/chat/completions"
    headers = {"Authorization": f"Bearer {TENANT_KEY}"}
    async with httpx.AsyncClient(timeout=120, headers=headers) as client:

        async def via_gateway(i: int) -> Record:
            return await send_chat(client, endpoint, workload.chat_body(cell, i))

        async def via_bare(i: int) -> Record:
            try:
                conn.send_bytes(json.dumps({"i": i}).encode())
                return Record(**json.loads(await asyncio.to_thread(conn.recv_bytes)))
            except (EOFError, OSError) as exc:
                raise LaunchError(f"the bare engine stopped answering: {exc!r}") from exc

        await warm_up(client, endpoint, workload, "gateway")  # the bare engine warms itself
        gateway: list[Record] = []
        bare: list[Record] = []
        for i in tqdm(range(cell.requests), desc="overhead pairs", unit="pair"):
            first, second = (via_gateway, via_bare) if i % 2 == 0 else (via_bare, via_gateway)
            one = await first(i)
            await asyncio.sleep(PAUSE_S)
            two = await second(i)
            await asyncio.sleep(PAUSE_S)
            gateway.append(one if first is via_gateway else two)
            bare.append(two if first is via_gateway else one)
    return gateway, bare
