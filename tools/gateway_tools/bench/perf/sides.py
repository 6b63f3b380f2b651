"""The sides under test, each started fresh per round with the same engine arguments,
adapters and CPU runtime environment.

- ``bare``: the in-process ``AsyncLLM`` (``perf/bare.py`` in a child process)
- ``vllm``: vLLM's own OpenAI server (``perf/vllm_side.py``)
- ``gateway-on`` / ``gateway-off``: ``gateway serve``, with tenant keys on, as an
  operator runs it, with the grouped CPU LoRA path on or off. An engine process decides
  on the path once, at start, so each arm is its own gateway process.
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

from gateway.common.usage import UsageError
from gateway.engine.grouped_lora.plugin import ENV_VAR as GROUPED_LORA_ENV
from gateway.engine.vllm_engine import EngineOptions
from gateway.tenancy.keys import hash_key
from gateway_tools.bench.perf.loadgen import Record, send_chat
from gateway_tools.bench.perf.runner import run_cell
from gateway_tools.bench.perf.workload import BASE_MODEL, SOURCE_ADAPTER, Cell, Workload
from gateway_tools.launch import LaunchError, launch

TENANT_KEY = "perf-bench-tenant-key-0123456789"
ADMIN_KEY = "perf-bench-admin-key-0123456789ab"
METRICS_KEY = "perf-bench-metrics-key-0123456789"
SIDES = ("bare", "vllm", "gateway")
ARMS = ("on", "off")  # the gateway's grouped CPU LoRA path

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


@dataclass(frozen=True)
class Side:
    """One process kind under one LoRA path; ``name`` keys its results."""

    name: str
    kind: str  # one of SIDES
    grouped_lora: bool


def plan_sides(kinds: list[str], arms: list[str]) -> list[Side]:
    """The gateway once per arm; the bare engine on the first arm's path, so that
    gateway / bare compares like with like; ``vllm serve`` on vLLM's own path, always."""
    if len(set(arms)) != len(arms) or len(set(kinds)) != len(kinds):
        raise UsageError(f"each side and arm once, got sides {kinds} and arms {arms}")
    sides: list[Side] = []
    for kind in kinds:
        if kind == "gateway":
            sides += [Side(f"gateway-{arm}", kind, arm == "on") for arm in arms]
        else:
            sides.append(Side(kind, kind, kind == "bare" and arms[0] == "on"))
    return sides


def grouped_env(enabled: bool) -> dict[str, str]:
    """The variable that is both the ``grouped_lora`` setting and what vLLM's processes
    (the plugin) read; set explicitly for every side, never inherited from the caller."""
    return {GROUPED_LORA_ENV: "1" if enabled else "0"}


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


def bare_env(bench: Bench, grouped_lora: bool) -> dict[str, str]:
    """The bare engine child's whole environment (its ``Settings`` read the path from it)."""
    return {**os.environ, **bench.env, **grouped_env(grouped_lora)}


def start_bare(
    bench: Bench, cells: list[Cell], tag: str, grouped_lora: bool, serve: Path | None = None
) -> tuple[subprocess.Popen, Path, Path]:
    """The bare engine child (``perf/bare.py``): it runs ``cells`` and appends each
    summary to the returned JSONL file, or with ``serve`` answers requests one by one on
    that Unix socket. Returns the process, the JSONL file and the log."""
    spec = {
        "workload": bench.workload.to_json(),
        "cells": [{k: v for k, v in c.as_dict().items() if k != "key"} for c in cells],
        "adapters": bench.adapter_paths(),
        "serve": None if serve is None else str(serve),
    }
    spec_file = bench.work / f"bare-{tag}.json"
    spec_file.write_text(json.dumps(spec))
    out = bench.work / f"bare-{tag}.jsonl"
    out.unlink(missing_ok=True)
    log = bench.work / f"bare-{tag}.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway_tools.bench.perf.bare", str(spec_file), str(out)],
            env=bare_env(bench, grouped_lora),
            stdout=sink,
            stderr=sink,
        )
    return proc, out, log


def run_bare(
    bench: Bench, cells: list[Cell], tag: str, progress: Progress, grouped_lora: bool
) -> dict[str, Any]:
    started = time.perf_counter()
    proc, out, log = start_bare(bench, cells, tag, grouped_lora)
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


def gateway_env(bench: Bench, grouped_lora: bool, profiled: bool = False) -> dict[str, str]:
    """What ``gateway serve`` gets on top of the caller's environment."""
    env = {
        **bench.env,
        **grouped_env(grouped_lora),
        "GATEWAY_AUTH_MODE": "tenants",
        "GATEWAY_TENANTS_FILE": str(bench.work / "tenants.yaml"),
        "GATEWAY_ADMIN_KEY": ADMIN_KEY,
        "GATEWAY_METRICS_KEY": METRICS_KEY,
        "GATEWAY_REGISTRY_FILE": str(bench.work / "registry.json"),
        "GATEWAY_SERVED_MODEL_NAME": BASE_MODEL,
    }
    if profiled:  # a profiler follows one process: preload up front instead of re-exec
        env["GATEWAY_CPU_RUNTIME_APPLIED"] = "1"
    return env


@contextmanager
def gateway_serve(
    bench: Bench, log: Path, grouped_lora: bool, wrapper: list[str] | None = None
) -> Iterator[tuple[str, int]]:
    (bench.work / "tenants.yaml").write_text(yaml.safe_dump({"tenants": [
        {"name": "bench", "key_hashes": [hash_key(TENANT_KEY)], "allowed_adapters": ["*"]},
    ]}))  # fmt: skip
    env = gateway_env(bench, grouped_lora, profiled=wrapper is not None)
    adapters = {name: "v1" for name in bench.workload.adapter_names}
    with launch(log, adapters=adapters, store=bench.store, env=env, wrapper=wrapper) as gw:
        yield gw.url, gw.pid


async def warm_up(client: httpx.AsyncClient, endpoint: str, workload: Workload, label: str) -> None:
    """The workload's untimed warm-up requests; any failure stops the run."""
    for warm in workload.warmup():
        for i in range(warm.requests):
            record = await send_chat(client, endpoint, workload.chat_body(warm, i))
            if not record.ok:
                raise LaunchError(f"{label} warm-up request failed: {record.error}")


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
            await warm_up(client, endpoint, workload, label)
            for cell in cells:

                async def send(i: int, cell: Cell = cell) -> Record:
                    return await send_chat(client, endpoint, workload.chat_body(cell, i))

                progress(cell.key, await run_cell(send, workload, cell, pid, label))

    asyncio.run(drive())
