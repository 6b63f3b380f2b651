"""The versions in a scratch store, and the planned blocks sent to the gateway serving it.

The registry serves one current version per adapter name (``model`` or ``adapter`` in a
request is a name, never a version), so two versions of one adapter are served side by
side under two names: ``banking77-v2/v2`` and ``banking77-v3/v3`` in a scratch store,
their files copied unchanged.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from gateway.common.names import is_valid_name
from gateway.common.usage import UsageError
from gateway.registry.store import REQUIRED_FILES
from gateway_tools.bench.classify.plan import Block
from gateway_tools.bench.consistency.run import Item, answer_text, classify_fields
from gateway_tools.bench.consistency.score import parse_answer
from gateway_tools.bench.perf.loadgen import Record, closed_loop
from gateway_tools.bench.perf.stats import summarise
from gateway_tools.launch import LaunchError
from schemas import intent_model

DECISION_TOKENS, JSON_ANSWER = "decision tokens", "JSON under the grammar"


@dataclass(frozen=True)
class Target:
    """One version as the run addresses it and checks its answers."""

    version: str
    name: str  # its adapter name in the scratch store and in every request
    source: Path  # its folder in the adapter store
    answer_format: str  # DECISION_TOKENS or JSON_ANSWER, from its manifest
    labels: frozenset[str]
    schema: dict[str, Any]  # the intent schema over its labels, as /v1/classify validates


def load_target(store: Path, adapter: str, version: str) -> Target:
    """``store/adapter/version`` as a target; a missing version or label set is a mistake."""
    source = store / adapter / version
    manifest_path = source / "manifest.json"
    if not manifest_path.is_file():
        raise UsageError(f"--versions {version}: {manifest_path} does not exist")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    labels = tuple(manifest.get("labels") or ())
    if not labels:
        raise UsageError(f"--versions {version}: {manifest_path} has no label set to classify")
    name = f"{adapter}-{version}"
    if not is_valid_name(name):
        raise UsageError(f"--versions {version}: {name!r} is too long for an adapter name")
    answer = DECISION_TOKENS if manifest.get("answer") else JSON_ANSWER
    schema = intent_model(labels).model_json_schema()
    return Target(version, name, source, answer, frozenset(labels), schema)


def stage_store(targets: list[Target], store: Path) -> dict[str, str]:
    """Copy each version into ``store`` under its own name; the ``adapters`` setting that
    registers them all (name -> version)."""
    for target in targets:
        folder = store / target.name / target.version
        folder.mkdir(parents=True)
        for file in REQUIRED_FILES:
            shutil.copy2(target.source / file, folder / file)
    return {target.name: target.version for target in targets}


async def classify_once(
    client: httpx.AsyncClient, target: Target, item: Item
) -> tuple[Record, dict[str, Any]]:
    """One request as the load generator counts it, and its answer as the consistency
    benchmark scores one (schema validity, label, confidence, escalation)."""
    body = {"text": item.texts["original"], "adapter": target.name}
    started = time.perf_counter()
    res, payload, error = None, {}, None
    try:
        res = await client.post("/v1/classify", json=body)
        payload = res.json()
    except httpx.HTTPError as exc:
        error = f"transport: {type(exc).__name__}"
    except ValueError:  # not JSON, e.g. a proxy's error page
        pass
    latency = time.perf_counter() - started
    fields: dict[str, Any] = {}
    if res is not None and res.status_code == 200 and payload:
        fields = classify_fields(res, payload) | {
            "prompt_tokens": payload["usage"]["prompt_tokens"],
            "output_tokens": payload["usage"]["completion_tokens"],
            "threshold": payload["escalation"]["threshold"],
            "version": res.headers.get("x-gateway-adapter-version"),
        }
    elif res is not None:
        error = (payload.get("error") or {}).get("code") or f"http_{res.status_code}"
    raw = answer_text("/v1/classify", payload) if fields else None
    parsed = parse_answer(raw, target.schema, target.labels)
    answer = {
        "item": item.index, "variant": "original", "gold": item.gold, "raw": raw,
        "error": error, "is_json": parsed.is_json, "is_valid": parsed.is_valid,
        "label": parsed.label, "latency_s": round(latency, 4), "prompt_tokens": None, **fields,
    }  # fmt: skip
    record = Record(
        bool(fields),
        latency,
        output_tokens=fields.get("output_tokens", 0),
        error=error,
        started=started,
        prompt_tokens=fields.get("prompt_tokens", 0),
    )
    return record, answer


async def run_block(
    client: httpx.AsyncClient,
    block: Block,
    targets: dict[str, Target],
    items: list[Item],
    entries: dict[str, dict[str, Any]],
    bar: tqdm,
) -> None:
    """Send ``block`` as a closed loop; append each version's cell summary and answers to
    its entry. A version alone in its block is timed by the block's wall clock; one that
    alternates with others (concurrency 1) by the time its own requests took."""
    answers: list[dict[str, Any]] = [{} for _ in block.items]

    async def send(i: int) -> Record:
        version, text = block.request(i)
        record, answers[i] = await classify_once(client, targets[version], items[text])
        return record

    started = time.perf_counter()
    records = await closed_loop(send, len(block.items), block.concurrency, bar.update)
    wall = time.perf_counter() - started
    for version, indices in block.by_version().items():
        mine = [records[i] for i in indices]
        alone = len(block.versions) == 1
        summary = summarise(mine, wall if alone else sum(r.latency for r in mine))
        entry = entries[version]
        entry["cells"].setdefault(block.cell, []).append({"round": block.round, **summary})
        entry["answers"] += [answers[i] for i in indices]


async def drive(
    url: str,
    targets: dict[str, Target],
    blocks: list[Block],
    items: list[Item],
    entries: dict[str, dict[str, Any]],
    save: Callable[[], None],
    bar: tqdm,
) -> None:
    """Warm every version up (adapter loaded, grammar compiled; untimed, and checked to
    come from the version asked for), then send the blocks, saving after each."""
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        for version, target in targets.items():
            record, answer = await classify_once(client, target, items[0])
            if not record.ok:
                raise LaunchError(f"{target.name}: the warm-up request failed: {record.error}")
            if answer["version"] != version:
                raise LaunchError(f"{target.name} answered from version {answer['version']!r}")
            entries[version]["calibration"] = answer["calibration"]
        save()
        for block in blocks:
            await run_block(client, block, targets, items, entries, bar)
            save()
