"""``gateway-tools bench neighbours``: can a tenant inside its limits slow another one down?

Tenant B sends steady light traffic: /v1/classify, one request at a time. Tenant A floods
at its concurrency cap with long generations, each with a new complex inline schema (a
new grammar for the engine to compile, and A's schema budget to spend). One gateway per
``fair_share`` mode (off, then on) runs two phases: B alone (its own baseline), then B
while A floods. The report gives B's p50/p95 per phase, their ratio to B alone on the
same gateway (goal: p95 at most 1.5x), and A's outcomes by code (429s from A's budgets
are expected). Writes ``results.json`` and ``report.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.config import REPO_ROOT
from gateway.tenancy import hash_key
from gateway_tools.bench.data import banking77_texts
from gateway_tools.bench.perf.loadgen import Record, closed_loop, send_chat
from gateway_tools.bench.stats import DEFINITION, ms, percentile, rounded
from gateway_tools.bench.tables import cell
from gateway_tools.launch import launch

GOAL_P95_RATIO = 1.5
FLOOD_PROMPT = "Fill in this record with a long, detailed, realistic example."


@dataclass(frozen=True)
class Phase:
    fair_share: bool
    flood: bool  # A floods while B is measured

    @property
    def name(self) -> str:
        return f"{'fair' if self.fair_share else 'fifo'}/{'b_with_a' if self.flood else 'b_alone'}"


def plan(fair_modes: Sequence[bool] = (False, True)) -> list[list[Phase]]:
    """The phases of each gateway, one gateway per ``fair_share`` mode: B alone first, so
    each flood is compared with a baseline taken on the same process."""
    return [[Phase(fair, flood=False), Phase(fair, flood=True)] for fair in fair_modes]


def flood_schema(i: int) -> dict[str, Any]:
    """A complex schema no earlier request used (field names carry ``i``): nesting, enums,
    bounds and an array of objects, so the engine compiles a new grammar each time."""
    address = {"street": {"type": "string"}, "city": {"type": "string"},
               "zip": {"type": "string", "pattern": "^[0-9]{5}$"}}  # fmt: skip
    item = {"type": "object", "additionalProperties": False, "required": [f"sku_{i}", "qty"],
            "properties": {f"sku_{i}": {"type": "string"},
                           "qty": {"type": "integer", "minimum": 1, "maximum": 99}}}  # fmt: skip
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [f"id_{i}", "status", "items", "notes"],
        "properties": {
            f"id_{i}": {"type": "integer", "minimum": 0},
            "status": {"enum": [f"{state}_{i}" for state in ("new", "open", "held", "done")]},
            "address": {"type": "object", "properties": address},
            "items": {"type": "array", "items": item, "minItems": 1},
            "notes": {"type": "string"},
        },
    }


def flood_body(i: int, max_tokens: int) -> dict[str, Any]:
    """A's streamed chat request with schema ``i``: a long generation."""
    return {"model": "base", "max_tokens": max_tokens, "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": FLOOD_PROMPT}],
            "response_format": {"type": "json_schema", "json_schema": {
                "name": f"flood-{i}", "schema": flood_schema(i)}}}  # fmt: skip


def tenants_file(a_key: str, b_key: str, a_concurrency: int, adapter: str | None) -> dict:
    """A floods within its caps; B is limited only to its adapter."""
    return {"tenants": [
        {"name": "a", "key_hashes": [hash_key(a_key)], "max_concurrency": a_concurrency},
        {"name": "b", "key_hashes": [hash_key(b_key)],
         "allowed_adapters": [adapter] if adapter else []},
    ]}  # fmt: skip


async def send_classify(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> Record:
    started = asyncio.get_running_loop().time()
    try:
        res = await client.post(url, json=body)
    except httpx.HTTPError as exc:
        elapsed = asyncio.get_running_loop().time() - started
        return Record(False, elapsed, error=type(exc).__name__)
    elapsed = asyncio.get_running_loop().time() - started
    if res.status_code == 200:
        return Record(True, elapsed)
    try:
        code = str(res.json()["error"].get("code") or res.status_code)
    except (ValueError, KeyError, TypeError, AttributeError):
        code = str(res.status_code)
    return Record(False, elapsed, error=code)


def summarise(records: Sequence[Record]) -> dict[str, Any]:
    """B's figures: percentiles over the requests that succeeded, errors by code."""
    seconds = [r.latency for r in records if r.ok]
    return {"requests": len(records), "ok": len(seconds),
            "p50_ms": ms(percentile(seconds, 0.5)), "p95_ms": ms(percentile(seconds, 0.95)),
            "errors": dict(Counter(r.error for r in records if not r.ok))}  # fmt: skip


def outcomes(records: Sequence[Record]) -> dict[str, Any]:
    """A's requests by outcome: ``ok`` or the error code."""
    codes = Counter("ok" if r.ok else str(r.error) for r in records)
    return {"requests": len(records), "codes": dict(sorted(codes.items()))}


def ratios(phases: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per gateway: B's p50 and p95 with A flooding over B alone, and whether p95 meets
    the goal. ``None`` where either side has no successful request."""
    found = []
    for fair in dict.fromkeys(p["fair_share"] for p in phases):
        alone, flood = ({p["flood"]: p["b"] for p in phases if p["fair_share"] == fair}[f]
                        for f in (False, True))  # fmt: skip
        row: dict[str, Any] = {"fair_share": fair}
        for q in ("p50_ms", "p95_ms"):
            row[q.replace("_ms", "_ratio")] = (
                rounded(flood[q] / alone[q], 2) if flood[q] and alone[q] else None
            )
        row["goal_met"] = None if row["p95_ratio"] is None else row["p95_ratio"] <= GOAL_P95_RATIO
        found.append(row)
    return found


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Noisy neighbour: tenant A floods, tenant B classifies", "",
        f"B: {result['b_requests']} /v1/classify requests one at a time. A: "
        f"{result['a_concurrency']} at once (its cap), max_tokens {result['a_max_tokens']}, "
        "a new inline schema each request.", "",
        "| gateway | phase | B ok | B p50 ms | B p95 ms | B errors | A outcomes |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for p in result["phases"]:
        b, a = p["b"], p.get("a")
        lines.append(
            f"| {'fair share' if p['fair_share'] else 'arrival order'} | "
            f"{'B with A flooding' if p['flood'] else 'B alone'} | {b['ok']}/{b['requests']} | "
            f"{cell(b['p50_ms'], '{:.0f}')} | {cell(b['p95_ms'], '{:.0f}')} | "
            f"{json.dumps(b['errors']) if b['errors'] else '-'} | "
            f"{json.dumps(a['codes']) if a else '-'} |"
        )
    goal = f"Ratio to B alone on the same gateway (goal: p95 at most {GOAL_P95_RATIO}x):"
    lines += ["", goal, ""]
    for r in result["ratios"]:
        verdict = {True: "met", False: "missed", None: "n/a"}[r["goal_met"]]
        lines.append(
            f"- {'fair share' if r['fair_share'] else 'arrival order'}: p50 "
            f"{cell(r['p50_ratio'], '{:.2f}x')}, p95 {cell(r['p95_ratio'], '{:.2f}x')} ({verdict})"
        )
    return "\n".join([*lines, "", DEFINITION, ""])


async def run_phase(url: str, phase: Phase, keys: dict[str, str], args: argparse.Namespace,
                    texts: Sequence[str]) -> dict[str, Any]:  # fmt: skip
    """B's closed loop (one at a time); while ``phase.flood``, A's workers at its cap
    send until B is done, after ``--warmup-s`` for A to fill its slots."""
    a_records: list[Record] = []
    accepted: list[int] = []  # A's schemas the server has compiled
    chat_url = url + "/v1/chat/completions"
    stop = asyncio.Event()
    auth = {name: {"Authorization": f"Bearer {key}"} for name, key in keys.items()}
    async with (httpx.AsyncClient(timeout=600, headers=auth["a"]) as a_client,
                httpx.AsyncClient(timeout=600, headers=auth["b"]) as b_client):  # fmt: skip

        async def flood_worker(worker: int) -> None:
            fresh, reuse = worker, None
            while not stop.is_set():
                i = fresh if reuse is None else reuse
                record = await send_chat(a_client, chat_url, flood_body(i, args.a_max_tokens))
                a_records.append(record)
                if reuse is None:
                    fresh += args.a_concurrency  # every worker's new schemas are distinct
                    if record.ok:
                        accepted.append(i)
                # Past A's schema budget its slots stay busy with a schema already seen
                # (free), and the next request tries a new one again.
                refused = record.error == "schema_budget_exceeded"
                reuse = accepted[-1] if refused and accepted else None
                if refused and not accepted:
                    await asyncio.sleep(1.0)

        flood = [asyncio.create_task(flood_worker(w))
                 for w in range(args.a_concurrency if phase.flood else 0)]  # fmt: skip
        if phase.flood:
            await asyncio.sleep(args.warmup_s)

        async def classify(i: int) -> Record:
            body = {"text": texts[i % len(texts)]}
            if args.adapter:
                body["adapter"] = args.adapter
            return await send_classify(b_client, url + "/v1/classify", body)

        b_records = await closed_loop(classify, args.b_requests, 1, lambda: None)
        stop.set()
        await asyncio.gather(*flood)
    return {"phase": phase.name, "fair_share": phase.fair_share, "flood": phase.flood,
            "b": summarise(b_records),
            "a": outcomes(a_records) if phase.flood else None}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--b-requests", type=int, default=60, help="B's requests per phase")
    parser.add_argument("--a-concurrency", type=int, default=8, help="A's max_concurrency")
    parser.add_argument("--a-max-tokens", type=int, default=256)
    parser.add_argument("--warmup-s", type=float, default=10.0, help="A alone before B starts")
    parser.add_argument("--adapter", default="demo", help="B's adapter (empty: the base model)")
    parser.add_argument("--adapter-version", default="v1")
    parser.add_argument("--out", default=str(REPO_ROOT / "bench-results" / "neighbours"))


def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    texts = banking77_texts(args.b_requests)
    keys = {"a": secrets.token_urlsafe(24), "b": secrets.token_urlsafe(24)}
    result: dict[str, Any] = {
        "command": "gateway-tools bench neighbours",
        "b_requests": args.b_requests,
        "a_concurrency": args.a_concurrency,
        "a_max_tokens": args.a_max_tokens,
        "phases": [],
    }
    for phases in plan():
        with tempfile.TemporaryDirectory() as tmp:
            tenants = Path(tmp) / "tenants.yaml"
            spec = tenants_file(keys["a"], keys["b"], args.a_concurrency, args.adapter or None)
            tenants.write_text(yaml.safe_dump(spec))
            env = {"GATEWAY_AUTH_MODE": "tenants", "GATEWAY_TENANTS_FILE": str(tenants),
                   "GATEWAY_ADMIN_KEY": secrets.token_urlsafe(24),
                   "GATEWAY_FAIR_SHARE": str(phases[0].fair_share).lower()}  # fmt: skip
            adapters = {args.adapter: args.adapter_version} if args.adapter else {}
            with launch(Path(tmp) / "gw.log", adapters=adapters, env=env) as gw:
                for phase in phases:
                    measured = asyncio.run(run_phase(gw.url, phase, keys, args, texts))
                    result["phases"].append(measured)
                    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    result["ratios"] = ratios(result["phases"])
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "report.md").write_text(markdown(result))
    print(json.dumps(result["ratios"], indent=1))
    return 0
