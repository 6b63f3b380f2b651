"""The report's sections after the main table: what LoRA costs against the base model
on every side, the grouped LoRA path on against off, and the paired overhead interval."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gateway_tools.bench.perf.report import (
    Pooled,
    gateway_side,
    get,
    ratio,
    side_names,
    verdict_text,
)
from gateway_tools.bench.perf.workload import Cell
from gateway_tools.bench.tables import cell

THROUGHPUT = (("requests_per_s", "req/s"), ("output_tokens_per_s", "output tok/s"))
TTFT = (("ttft_p50_ms", "TTFT p50"),)
ARMS = ("gateway-on", "gateway-off")


def cells_of(result: dict[str, Any]) -> list[Cell]:
    """The run's cells, from perf.json (reports from before prefill cells included)."""
    return [Cell(**{k: v for k, v in c.items() if k != "key"}) for c in result["workload"]["cells"]]


def lora_vs_base(pooled: Pooled, cells: list[Cell]) -> list[dict[str, Any]]:
    """Each adapter cell over its base twin (``a0``, same load) on every side: throughput
    with a schema at the lowest and highest concurrency, time to first token for the
    long-prompt cells."""
    keys = {c.key for c in cells}
    closed = [c.concurrency for c in cells if c.schema and not c.rate and not c.max_tokens]
    ends = {min(closed), max(closed)} if closed else set()
    rows = []
    for c in cells:
        base = replace(c, adapters=0).key
        if not c.adapters or base not in keys:
            continue
        if c.long_prompt:
            measures = TTFT
        elif (c.schema or c.fixed) and not c.rate and not c.max_tokens and c.concurrency in ends:
            measures = THROUGHPUT
        else:
            continue
        for field, label in measures:
            ratios = {
                side: ratio(get(pooled, side, c.key, field), get(pooled, side, base, field))
                for side in side_names(pooled)
            }
            rows.append({"cell": c.key, "base": base, "measure": label, "ratios": ratios})
    return rows


def on_vs_off(pooled: Pooled) -> list[dict[str, Any]]:
    """Per cell, the grouped path's gateway arm over vLLM's path's; empty unless both ran."""
    if not all(arm in pooled for arm in ARMS):
        return []
    on, off = ARMS
    return [
        {"cell": key, **{label: ratio(get(pooled, on, key, f), get(pooled, off, key, f))
                         for f, label in THROUGHPUT + TTFT}}
        for key in pooled[on]
    ]  # fmt: skip


def markdown(result: dict[str, Any]) -> list[str]:
    pooled: Pooled = result["pooled"]
    return [
        *_lora_vs_base(pooled, lora_vs_base(pooled, cells_of(result))),
        *_arms(pooled),
        *_overhead(result.get("overhead")),
    ]


def _lora_vs_base(pooled: Pooled, rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["", "## LoRA / base", "", "This run has no base-model cells (`--adapters 0`)."]
    sides = side_names(pooled)
    prompt = get(pooled, gateway_side(pooled), "free-a0-c1-t1-long", "mean_prompt_tokens")
    lines = [
        "", "## LoRA / base", "",
        "Each cell with adapters over the same cell without one (`a0`: the base model), on "
        "the same side. Throughput with the schema (the base model writes answers of other "
        "lengths than the adapters, so output tokens/s is the fairer ratio); time to first "
        "token for one-token answers to a long prompt at concurrency 1 (BANKING77 messages, "
        f"{cell(prompt, '{:.0f}')} prompt tokens as the gateway counted them: the prefill).",
        "",
        "| cell | over | measure | " + " | ".join(sides) + " |",
        "|---|---|---|" + "---|" * len(sides),
    ]  # fmt: skip
    for row in rows:
        values = " | ".join(cell(row["ratios"].get(s), "{:.3f}") for s in sides)
        lines.append(f"| {row['cell']} | {row['base']} | {row['measure']} | {values} |")
    return lines


def _arms(pooled: Pooled) -> list[str]:
    if not any(side in pooled for side in ARMS):
        return []
    lines = [
        "", "## Grouped LoRA path: on / off", "",
        "`gateway-on` runs `gateway serve` with `GATEWAY_GROUPED_LORA=1`: the grouped CPU "
        "LoRA path (one matrix product per adapter in a batch); `gateway-off` with `0`: "
        "vLLM's own path, which copies each token's adapter weights. An engine decides on "
        "the path once, at start, so each arm is its own gateway process, run in the same "
        "rounds on the same machine. The bare engine runs the first arm's path; `vllm "
        "serve` always runs vLLM's own (`GATEWAY_GROUPED_LORA=0` in its environment). On "
        "`a0` cells (no adapter) the path does nothing: their ratios are the noise floor.",
    ]  # fmt: skip
    rows = on_vs_off(pooled)
    if rows:
        labels = [label for _, label in THROUGHPUT + TTFT]
        lines += ["", "| cell | " + " | ".join(f"{x} on/off" for x in labels) + " |",
                  "|---|" + "---|" * len(labels)]  # fmt: skip
        for row in rows:
            values = " | ".join(cell(row[x], "{:.3f}") for x in labels)
            lines.append(f"| {row['cell']} | {values} |")
    return lines


def _overhead(overhead: dict[str, Any] | None) -> list[str]:
    if not overhead:
        return []
    head = ["", "## Serving overhead, paired", ""]
    if "error" in overhead:
        return [*head, f"The paired phase failed: {overhead['error'].splitlines()[0]}"]
    if overhead["verdict"] is None:
        return [*head, f"No pair succeeded ({overhead['failed_pairs']} failed)."]
    path = "on" if overhead["grouped_lora"] else "off"
    return [*head, (
        f"{overhead['pairs']} pairs of one-token requests at concurrency 1 (one adapter, no "
        f"schema), the gateway and the bare engine running side by side (grouped path "
        f"{path}, {overhead['kv_cache_gib']} GiB KV cache each), the same request to both, "
        f"{overhead['order']}. Gateway minus bare: median {overhead['median_ms']} ms, "
        f"{overhead['confidence']:.0%} bootstrap interval [{overhead['ci_low_ms']}, "
        f"{overhead['ci_high_ms']}] ms ({overhead['resamples']} resamples, seed "
        f"{overhead['seed']}; p50 {overhead['gateway_p50_ms']} ms against "
        f"{overhead['bare_p50_ms']} ms; {overhead['failed_pairs']} failed pairs left out). "
        f"Target: added p50 <= {overhead['limit_ms']:g} ms: **{verdict_text(overhead)}** (met "
        "when the whole interval is at or under it, not met when all of it is above)."
        + _stolen(overhead.get("cpu_share"))
    )]  # fmt: skip


def _stolen(share: dict[str, float] | None) -> str:
    """The gateway's added work is CPU time, so its milliseconds grow when the host takes
    CPU away; the verdict is read with that share beside it."""
    if not share:
        return ""
    return (
        f" While the pairs ran the hypervisor stole {share['steal']:.0%} of the CPU time "
        f"({share['busy']:.0%} busy, {share['idle']:.0%} idle)."
    )
