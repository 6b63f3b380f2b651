"""One variant at a time: resolve its checkpoint, start ``gateway serve`` on it, warm it
up, read its memory, run the speed cells and the accuracy sample, stop it.

Each measurement goes into the variant's entry and ``save`` runs at once, so a run cut
short keeps everything it measured.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from gateway.common.usage import UsageError
from gateway.config import Settings
from gateway.models import ModelError, resolve_model
from gateway_tools.bench.consistency.arms import Arm
from gateway_tools.bench.consistency.run import Item, load_rows, run_arm
from gateway_tools.bench.consistency.score import score_arm
from gateway_tools.bench.data import BANKING77, shown
from gateway_tools.bench.perf.loadgen import Record, send_chat
from gateway_tools.bench.perf.runner import MemorySampler, run_cell
from gateway_tools.bench.perf.workload import SOURCE_ADAPTER, Cell, Workload, build_workload
from gateway_tools.launch import LaunchError, RunningGateway, launch

ADAPTER = SOURCE_ADAPTER.parent.name  # the shipped banking77 adapter, from adapters/
ADAPTER_VERSION = SOURCE_ADAPTER.name
ARMS = ("base", "adapter")  # without an adapter; with the shipped one
TEST_SPLIT = BANKING77 / "test.csv"
Save = Callable[[], None]


@dataclass(frozen=True)
class Plan:
    """The work every variant gets, identically."""

    concurrency: tuple[int, ...]
    requests: int  # per cell
    max_tokens: int
    prompts: int  # distinct test messages the cells cycle through
    accuracy_items: int
    accuracy_concurrency: int
    seed: int


def adapter_manifest() -> dict[str, Any]:
    return json.loads((SOURCE_ADAPTER / "manifest.json").read_text())


def label_count() -> int:
    return len(adapter_manifest()["labels"])


def cell_key(arm: str, concurrency: int) -> str:
    return f"{arm}-c{concurrency}"


def accuracy_sample(size: int, seed: int) -> list[Item]:
    """A seeded sample of BANKING77's test split: the same items, in the same order, for
    every variant, so accuracies and per-item agreement compare."""
    rows = load_rows(TEST_SPLIT)
    if size > len(rows):
        raise UsageError(f"--accuracy-items {size}: {shown(TEST_SPLIT)} has {len(rows)} items")
    picked = sorted(random.Random(seed).sample(range(len(rows)), size))
    return [Item(i, rows[r][1], {"original": rows[r][0]}) for i, r in enumerate(picked)]


def checkpoint_bytes(model_dir: Path) -> int:
    """Bytes of the weight files, what quantization shrinks; tokenizer and configs are
    the same in every variant."""
    weights = sorted(model_dir.glob("*.safetensors"))
    if not weights:
        raise ModelError(f"{model_dir} holds no *.safetensors weights")
    return sum(path.stat().st_size for path in weights)


def gateway_env(variant: str, work: Path) -> dict[str, str]:
    """The variant chosen as an operator chooses it and served as its checkpoint says
    (no online quantization on top: a compressed-tensors checkpoint names its own
    method), open auth on loopback and a scratch registry, whatever the operator's own
    settings are."""
    return {
        "GATEWAY_BASE_VARIANT": variant,
        "GATEWAY_QUANTIZATION": "none",
        "GATEWAY_AUTH_MODE": "none",
        "GATEWAY_REGISTRY_FILE": str(work / f"registry-{variant}.json"),
    }


def workloads(plan: Plan, settings: Settings) -> dict[str, Workload]:
    """Per arm the perf benchmark's workload (BANKING77 messages, banking77's system prompt,
    the 77-label intent schema), sent to the base model or to the adapter."""
    shared = build_workload(1, plan.max_tokens, plan.prompts, plan.seed)
    return {
        "base": replace(shared, adapter_names=(settings.served_model_name,)),
        "adapter": replace(shared, adapter_names=(ADAPTER,)),
    }


def measure(
    variant: str,
    plan: Plan,
    settings: Settings,
    items: list[Item],
    work: Path,
    entry: dict[str, Any],
    save: Save,
    bar: tqdm,
) -> None:
    """Fill ``entry`` for ``variant``. One that cannot be served is recorded with its
    ``error`` (the report shows it) and the run goes on with the next variant."""
    try:
        bar.write(f"{variant}: resolving the checkpoint")
        info = resolve_model(None, settings.model_cache_dir, variant)
        entry["model"] = {**info.describe(), "path": shown(info.path)}
        entry["checkpoint_bytes"] = checkpoint_bytes(info.path)
        save()
        bar.write(f"{variant}: starting the gateway")
        with launch(
            work / f"gateway-{variant}.log",
            adapters={ADAPTER: ADAPTER_VERSION},
            store=SOURCE_ADAPTER.parent.parent,
            env=gateway_env(variant, work),
        ) as gateway:
            entry["ready_s"] = round(gateway.seconds_to_ready, 1)
            bar.write(f"{variant}: ready in {entry['ready_s']} s")
            asyncio.run(_drive(gateway, variant, plan, settings, items, entry, save, bar))
    except (LaunchError, ModelError) as exc:
        entry["error"] = f"{type(exc).__name__}: {exc}"[-4000:]
        bar.write(f"{variant}: failed, {entry['error'][:200]}")
        save()


async def _drive(
    gateway: RunningGateway,
    variant: str,
    plan: Plan,
    settings: Settings,
    items: list[Item],
    entry: dict[str, Any],
    save: Save,
    bar: tqdm,
) -> None:
    arms = workloads(plan, settings)
    endpoint = "/v1/chat/completions"
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    pid = gateway.pid
    async with httpx.AsyncClient(base_url=gateway.url, timeout=600, limits=limits) as client:
        for arm, workload in arms.items():  # untimed: adapter loaded, grammar compiled
            warm = await send_chat(client, endpoint, workload.chat_body(Cell(1, True, 1, 1), 0))
            if not warm.ok:
                raise LaunchError(f"{variant}: warm-up request ({arm}) failed: {warm.error}")
        entry["served"] = (await client.get("/v1/models")).json()["data"][0]
        memory = MemorySampler(pid)
        memory.sample()
        entry["rss_after_warmup_mb"] = round(memory.peak_total_mb, 1)
        entry["rss_front_after_warmup_mb"] = round(memory.peak_front_mb, 1)
        save()
        cells = entry.setdefault("cells", {})
        for arm, workload in arms.items():
            for concurrency in plan.concurrency:
                cell = Cell(1, True, concurrency, plan.requests)

                async def send(i: int, cell: Cell = cell, workload: Workload = workload) -> Record:
                    return await send_chat(client, endpoint, workload.chat_body(cell, i))

                label = f"{variant} {arm}"
                cells[cell_key(arm, concurrency)] = await run_cell(send, workload, cell, pid, label)
                save()
                bar.update()
        if items:
            manifest = adapter_manifest()
            classify = Arm("adapter_constrained", ADAPTER, manifest["system_prompt"], True,
                           classify_endpoint=True)  # fmt: skip
            schema = arms["adapter"].schema
            labels = frozenset(manifest["labels"])
            answers, wall = await run_arm(
                client, classify, items, schema, labels, plan.accuracy_concurrency
            )
            entry["accuracy"] = score_arm(answers, wall)
            entry["predicted"] = [answer["label"] for answer in answers]  # in item order
            save()
            bar.update()
