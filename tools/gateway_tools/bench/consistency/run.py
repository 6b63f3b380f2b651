"""``gateway-tools bench consistency``: run every arm over the same items through the gateway.

Every request, answer and error is saved (``results.json``), so a run can be inspected
and re-scored; the file is rewritten after each arm, so a long run loses at most one arm.
"""

from __future__ import annotations

import asyncio
import csv
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from gateway_tools.bench.consistency.arms import Arm, request
from gateway_tools.bench.consistency.perturb import variants
from gateway_tools.bench.consistency.score import Parsed, parse_answer, parse_decision, score_arm


@dataclass(frozen=True)
class Item:
    index: int
    gold: str
    texts: dict[str, str]  # variant name -> text


def load_rows(path: Path) -> list[tuple[str, str]]:
    """(text, label) pairs of a ``text,category`` (or ``text,label``) CSV."""
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            (r["text"].strip(), r.get("category") or r["label"]) for r in csv.DictReader(handle)
        ]


def load_items(
    path: Path, per_class: int, seed: int, perturbations: tuple[str, ...] | None
) -> list[Item]:
    """A fixed stratified sample of a labelled CSV, each item with its variants."""
    rows = load_rows(path)
    rng = random.Random(seed)
    by_label: dict[str, list[str]] = {}
    for text, label in rows:
        by_label.setdefault(label, []).append(text)
    picked = [
        (text, label)
        for label in sorted(by_label)
        for text in rng.sample(by_label[label], min(per_class, len(by_label[label])))
    ]
    return [Item(i, label, variants(text, perturbations)) for i, (text, label) in enumerate(picked)]


def answer_text(path: str, body: dict[str, Any]) -> str:
    if path == "/v1/classify":
        return json.dumps({k: body[k] for k in ("intent", "confidence", "requires_human_agent")})
    return body["choices"][0]["message"]["content"]


def classify_fields(res: httpx.Response, body: dict[str, Any]) -> dict[str, Any]:
    """The gateway's confidence, escalation flag and calibration header of one answer."""
    return {
        "confidence": body["confidence"],
        "escalated": body["requires_human_agent"],
        "calibration": res.headers.get("x-gateway-confidence"),
    }


def parse(arm: Arm, raw: str | None, schema: dict[str, Any], labels: frozenset[str]) -> Parsed:
    if arm.decision_tokens:
        return parse_decision(raw, arm.decision_tokens)
    return parse_answer(raw, schema, labels)


async def run_arm(
    http: httpx.AsyncClient,
    arm: Arm,
    items: list[Item],
    schema: dict[str, Any],
    labels: frozenset[str],
    concurrency: int,
) -> tuple[list[dict[str, Any]], float]:
    gate = asyncio.Semaphore(concurrency)
    jobs = [(item, variant, text) for item in items for variant, text in item.texts.items()]
    bar = tqdm(total=len(jobs), desc=f"arm {arm.name}", unit="req")

    async def one(item: Item, variant: str, text: str) -> dict[str, Any]:
        path, body = request(arm, text, schema)
        raw, error, prompt_tokens, extra = None, None, None, {}
        async with gate:
            started = time.perf_counter()
            try:  # one failed request is a recorded error, not a lost arm
                res: httpx.Response | None = await http.post(path, json=body)
            except httpx.HTTPError as exc:
                res, error = None, f"transport: {type(exc).__name__}"
            latency = time.perf_counter() - started
        try:
            payload = res.json() if res is not None else {}
        except ValueError:  # e.g. a proxy's HTML error page
            payload = {}
        bar.update()
        if res is not None and res.status_code == 200 and payload:
            raw = answer_text(path, payload)
            prompt_tokens = payload["usage"]["prompt_tokens"]
            extra = classify_fields(res, payload) if path == "/v1/classify" else {}
        elif res is not None:
            error = (payload.get("error") or {}).get("code") or f"http_{res.status_code}"
        parsed = parse(arm, raw, schema, labels)
        return {
            "item": item.index, "variant": variant, "text": text, "gold": item.gold,
            "raw": raw, "error": error, "is_json": parsed.is_json, "is_valid": parsed.is_valid,
            "label": parsed.label, "prompt_tokens": prompt_tokens, "latency_s": round(latency, 4),
            **extra,
        }  # fmt: skip

    started = time.perf_counter()
    answers = await asyncio.gather(*(one(*job) for job in jobs))
    wall = time.perf_counter() - started
    bar.close()
    return list(answers), wall


async def run_all(
    url: str,
    key: str | None,
    arms: list[Arm],
    items: list[Item],
    schema: dict[str, Any],
    labels: tuple[str, ...],
    concurrency: int,
    out: Path,
    meta: dict[str, Any],
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    results: dict[str, Any] = {"meta": meta, "arms": {}, "answers": {}}
    out.mkdir(parents=True, exist_ok=True)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600) as http:
        for arm in arms:
            answers, wall = await run_arm(http, arm, items, schema, frozenset(labels), concurrency)
            results["arms"][arm.name] = score_arm(answers, wall)
            results["answers"][arm.name] = answers
            (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    return results
