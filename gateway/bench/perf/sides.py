"""The three sides under test, each started fresh per round with the same engine
arguments, adapters and CPU runtime environment.

- ``bare``: the in-process ``AsyncLLM`` (``perf/bare.py`` in a child process)
- ``vllm``: vLLM's own OpenAI server (``python -m vllm.entrypoints.openai.api_server``)
- ``gateway``: ``gateway serve``, with tenant keys on, as an operator runs it
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.bench.launch import LaunchError, free_port, launch, stop
from gateway.bench.perf.loadgen import Record, send_chat
from gateway.bench.perf.runner import run_cell
from gateway.bench.perf.workload import SOURCE_ADAPTER, Cell, Workload
from gateway.engine.vllm_engine import WHITESPACE_FREE_BACKENDS, EngineOptions
from gateway.tenancy.keys import hash_key

TENANT_KEY = "perf-bench-tenant-key-0123456789"
ADMIN_KEY = "perf-bench-admin-key-0123456789ab"
METRICS_KEY = "perf-bench-metrics-key-0123456789"
SIDES = ("bare", "vllm", "gateway")

CellResult = dict[str, Any]
Progress = Callable[[str, CellResult], None]


@dataclass(frozen=True)
class Bench:
    """Everything a round needs: where, what, and with which environment."""

    work: Path
    workload: Workload
    store: Path  # <store>/<adapter>/v1, one copy of the source adapter per name
    options: EngineOptions
    env: dict[str, str]  # CPU runtime variables (LD_PRELOAD, thread binding) for all sides

    def adapter_paths(self) -> dict[str, str]:
        return {name: str(self.store / name / "v1") for name in self.workload.adapter_names}


def prepare_store(store: Path, names: tuple[str, ...]) -> None:
    """One registered version per tenant adapter. They share weights (the LoRA cost
    does not depend on the values) but are distinct adapters to the engine."""
    for name in names:
        target = store / name / "v1"
        if target.exists():
            continue
        shutil.copytree(SOURCE_ADAPTER, target)
        manifest = json.loads((target / "manifest.json").read_text())
        manifest.update(name=name, version="v1")
        (target / "manifest.json").write_text(json.dumps(manifest, indent=2))


def run_bare(bench: Bench, cells: list[Cell], tag: str, progress: Progress) -> dict[str, Any]:
    spec = {
        "workload": bench.workload.to_json(),
        "cells": [{k: v for k, v in c.as_dict().items() if k != "key"} for c in cells],
        "adapters": bench.adapter_paths(),
    }
    spec_file = bench.work / f"bare-{tag}.json"
    spec_file.write_text(json.dumps(spec))
    out = bench.work / f"bare-{tag}.jsonl"
    out.unlink(missing_ok=True)
    log = bench.work / f"bare-{tag}.log"
    started = time.perf_counter()
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.bench.perf.bare", str(spec_file), str(out)],
            env={**os.environ, **bench.env},
            stdout=sink,
            stderr=sink,
        )
        seen = 0
        ready_s = None
        while True:  # stream each cell's result as the child writes it
            done = proc.poll() is not None
            lines = out.read_text().splitlines() if out.exists() else []
            for line in lines[seen:]:
                row = json.loads(line)
                if "ready_s" in row:
                    ready_s = row["ready_s"]
                else:
                    progress(row["cell"], row["summary"])
            seen = len(lines)
            if done:
                break
            time.sleep(0.5)
    if proc.returncode != 0:
        raise LaunchError(f"bare engine run failed ({proc.returncode}):\n{log.read_text()[-4000:]}")
    return {"ready_s": ready_s, "wall_s": round(time.perf_counter() - started, 1)}


def vllm_serve_argv(options: EngineOptions, loras: dict[str, str], port: int) -> list[str]:
    """vLLM's server with the engine arguments ``engine_args`` gives the gateway."""
    structured: dict[str, Any] = {"backend": options.structured_backend}
    if options.disable_any_whitespace and options.structured_backend in WHITESPACE_FREE_BACKENDS:
        structured["disable_any_whitespace"] = True
    argv = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--host", "127.0.0.1", "--port", str(port),
        "--model", options.model_path, "--served-model-name", "base",
        "--dtype", options.dtype,
        "--max-model-len", str(options.max_model_len),
        "--gpu-memory-utilization", str(options.gpu_memory_utilization),
        "--max-num-seqs", str(options.max_num_seqs),
        "--enable-lora",
        "--max-loras", str(options.max_loras),
        "--max-cpu-loras", str(options.max_cpu_loras),
        "--max-lora-rank", str(options.max_lora_rank),
        "--structured-outputs-config", json.dumps(structured),
        "--seed", str(options.seed),
        "--disable-uvicorn-access-log",
    ]  # fmt: skip
    if options.quantization:
        argv += ["--quantization", options.quantization]
    if options.enforce_eager:
        argv.append("--enforce-eager")
    return [*argv, "--lora-modules", *(f"{name}={path}" for name, path in loras.items())]


@contextmanager
def vllm_serve(bench: Bench, log: Path, timeout_s: float = 900) -> Iterator[tuple[str, int]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    with log.open("w") as sink:
        proc = subprocess.Popen(
            vllm_serve_argv(bench.options, bench.adapter_paths(), port),
            env={**os.environ, **bench.env},
            stdout=sink,
            stderr=sink,
        )
    try:
        while True:
            if proc.poll() is not None:
                tail = log.read_text()[-4000:]
                raise LaunchError(f"vllm serve exited ({proc.returncode}):\n{tail}")
            try:
                if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.perf_counter() - started > timeout_s:
                raise LaunchError(f"vllm serve not ready in {timeout_s:.0f}s")
            time.sleep(0.5)
        yield url, proc.pid
    finally:
        stop(proc)


@contextmanager
def gateway_serve(
    bench: Bench, log: Path, wrapper: list[str] | None = None
) -> Iterator[tuple[str, int]]:
    tenants = bench.work / "tenants.yaml"
    tenants.write_text(yaml.safe_dump({"tenants": [
        {"name": "bench", "key_hashes": [hash_key(TENANT_KEY)], "allowed_adapters": ["*"]},
    ]}))  # fmt: skip
    env = {
        **bench.env,
        "GATEWAY_AUTH_MODE": "tenants",
        "GATEWAY_TENANTS_FILE": str(tenants),
        "GATEWAY_ADMIN_KEY": ADMIN_KEY,
        "GATEWAY_METRICS_KEY": METRICS_KEY,
        "GATEWAY_REGISTRY_FILE": str(bench.work / "registry.json"),
    }
    adapters = {name: "v1" for name in bench.workload.adapter_names}
    if wrapper:  # a profiler follows one process: preload up front instead of re-exec
        env["GATEWAY_CPU_RUNTIME_APPLIED"] = "1"
    with launch(log, adapters=adapters, store=bench.store, env=env, wrapper=wrapper) as gw:
        yield gw.url, gw.pid


def run_http(
    url: str,
    pid: int,
    bench: Bench,
    cells: list[Cell],
    label: str,
    progress: Progress,
    headers: dict[str, str] | None = None,
) -> None:
    async def drive() -> None:
        workload = bench.workload
        endpoint = url + "/v1/chat/completions"
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        async with httpx.AsyncClient(timeout=600, limits=limits, headers=headers) as client:
            warm = Cell(len(workload.adapter_names), True, 1, len(workload.adapter_names))
            for i in range(warm.requests):  # untimed: adapters loaded, grammar compiled
                record = await send_chat(client, endpoint, workload.chat_body(warm, i))
                if not record.ok:
                    raise LaunchError(f"{label} warm-up request failed: {record.error}")
            for cell in cells:

                async def send(i: int, cell: Cell = cell) -> Record:
                    return await send_chat(client, endpoint, workload.chat_body(cell, i))

                progress(cell.key, await run_cell(send, workload, cell, pid, label))

    asyncio.run(drive())
