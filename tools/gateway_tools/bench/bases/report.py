"""Ratios against the reference variant, ``report.md`` and ``chart.png`` from one run's
``results.json``: what decides the default base variant."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway_tools.bench.perf.report import ratio
from gateway_tools.bench.stats import DEFINITION
from gateway_tools.bench.tables import cell

SPEED = (  # field, column title, format
    ("requests_per_s", "req/s", "{:.2f}"),
    ("output_tokens_per_s", "output tok/s", "{:.1f}"),
    ("latency_p50_ms", "p50 ms", "{:.0f}"),
    ("latency_p95_ms", "p95 ms", "{:.0f}"),
)
CARD_IDENTITY = {"id", "object", "created", "owned_by"}  # what every model card has
MIB = 2**20
Value = Callable[[str, str], float | None]  # (variant, bar group) -> height


def peak_rss_mb(entry: dict[str, Any]) -> float | None:
    """The largest process-tree RSS any cell of the variant saw under load."""
    peaks = [c["rss_mb"] for c in (entry.get("cells") or {}).values() if c.get("rss_mb")]
    return max(peaks) if peaks else None


def checkpoint_mib(entry: dict[str, Any]) -> float | None:
    size = entry.get("checkpoint_bytes")
    return None if size is None else round(size / MIB, 1)


def accuracy(entry: dict[str, Any]) -> float | None:
    return (entry.get("accuracy") or {}).get("accuracy")


def agreement(
    predicted: list[str | None] | None, reference: list[str | None] | None
) -> float | None:
    """The share of items answered as the reference variant answered them (an answer that
    failed or held no valid label counts as none, and none equals none)."""
    if not predicted or not reference or len(predicted) != len(reference):
        return None
    same = sum(p == r for p, r in zip(predicted, reference, strict=True))
    return round(same / len(predicted), 4)


def served_as(card: dict[str, Any]) -> str:
    """What the running gateway said it serves (the quantization read from the loaded
    engine), flattened to ``key=value`` pairs for a table cell."""
    parts = []
    for key, value in card.items():
        if key in CARD_IDENTITY or value is None:
            continue
        if isinstance(value, dict):
            parts += [f"{key}.{k}={json.dumps(v)}" for k, v in value.items() if v is not None]
        else:
            parts.append(f"{key}={value}")
    return ", ".join(parts) or "n/a"


def comparisons(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per variant against the reference: ratios of size, memory, throughput and latency
    (variant / reference); accuracy as a difference in percentage points, and agreement."""
    variants = results["variants"]
    ref = variants.get(results["reference"]) or {}
    out: dict[str, dict[str, Any]] = {}
    for name, entry in variants.items():
        cells = entry.get("cells") or {}
        ref_cells = ref.get("cells") or {}
        mine, theirs = accuracy(entry), accuracy(ref)
        out[name] = {
            "checkpoint": ratio(entry.get("checkpoint_bytes"), ref.get("checkpoint_bytes")),
            "rss_after_warmup": ratio(
                entry.get("rss_after_warmup_mb"), ref.get("rss_after_warmup_mb")
            ),
            "rss_peak": ratio(peak_rss_mb(entry), peak_rss_mb(ref)),
            "cells": {
                key: {
                    field: ratio(
                        (cells.get(key) or {}).get(field), (ref_cells.get(key) or {}).get(field)
                    )
                    for field, _, _ in SPEED
                }
                for key in results["cells"]
            },
            "accuracy_points": None
            if mine is None or theirs is None
            else round(100 * (mine - theirs), 1),
            "agreement": agreement(entry.get("predicted"), ref.get("predicted")),
        }
    return out


def markdown(results: dict[str, Any]) -> str:
    ref = results["reference"]
    variants: dict[str, dict[str, Any]] = results["variants"]
    cmp = comparisons(results)
    times = f"×{ref}"
    work, sample, machine = results["workload"], results["accuracy_sample"], results["machine"]
    lines = [
        "# Base variants: size, memory, speed and accuracy",
        "",
        f"Command: `{results['command']}`",
        "",
        f"Machine: {machine['platform']}, {machine['cpus']} CPUs. One engine at a time, in "
        f"the order of the tables; `{times}` is a variant's figure over {ref}'s in this run.",
        "",
        f"Speed: streamed chat completions with the {work['schema']} JSON schema on, "
        f"{work['prompts']} BANKING77 test messages with {work['adapter']}'s system prompt, "
        f"`max_tokens` {work['max_tokens']}, temperature 0, {work['requests']} requests per "
        f"cell, closed loop. Cells: `base` = no adapter, `adapter` = {work['adapter']}; "
        "`cN` = concurrency N. " + DEFINITION,
        "",
        "## Served",
        "",
        "| variant | checkpoint (its variant) | served as (GET /v1/models) | ready s |",
        "|---|---|---|---|",
    ]
    for name, entry in variants.items():
        model = entry.get("model") or {}
        checkpoint = f"`{model['path']}` ({model['variant']})" if model else "n/a"
        lines.append(
            f"| {name} | {checkpoint} | {served_as(entry.get('served') or {})} "
            f"| {cell(entry.get('ready_s'), '{}')} |"
        )
    lines += [
        "",
        "## Size and memory",
        "",
        "Checkpoint: the weight files (`*.safetensors`). RSS: the gateway's whole process "
        "tree (front end and engine), after warm-up and at its peak under load; it includes "
        "the KV cache vLLM reserves, the same for every variant.",
        "",
        f"| variant | checkpoint MiB | {times} | RSS after warm-up MiB | {times} "
        f"| peak RSS under load MiB | {times} |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, entry in variants.items():
        row = cmp[name]
        lines.append(
            f"| {name} | {cell(checkpoint_mib(entry), '{:.1f}')} "
            f"| {cell(row['checkpoint'], '{:.2f}')} "
            f"| {cell(entry.get('rss_after_warmup_mb'), '{:.0f}')} "
            f"| {cell(row['rss_after_warmup'], '{:.3f}')} "
            f"| {cell(peak_rss_mb(entry), '{:.0f}')} | {cell(row['rss_peak'], '{:.3f}')} |"
        )
    lines += [
        "",
        "## Speed (JSON schema on)",
        "",
        "| cell | variant | "
        + " | ".join(f"{title} | {times}" for _, title, _ in SPEED)
        + " | errors |",
        "|---|---|" + "---|---|" * len(SPEED) + "---|",
    ]
    for key in results["cells"]:
        for name, entry in variants.items():
            measured = (entry.get("cells") or {}).get(key) or {}
            ratios = cmp[name]["cells"][key]
            figures = " | ".join(
                f"{cell(measured.get(field), fmt)} | {cell(ratios[field], '{:.3f}')}"
                for field, _, fmt in SPEED
            )
            lines.append(f"| {key} | {name} | {figures} | {cell(measured.get('errors'), '{}')} |")
    lines += [
        "",
        f"## BANKING77 accuracy ({work['adapter']} + constraint, `/v1/classify`)",
        "",
        f"The same {sample['items']} items for every variant: a seeded sample (seed "
        f"{sample['seed']}) of `{sample['data']}`. Agreement: the share of items answered as "
        f"{ref} answered them.",
        "",
        f"| variant | accuracy | Δ vs {ref}, points | agreement with {ref} | macro-F1 "
        "| schema-valid | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, entry in variants.items():
        acc = entry.get("accuracy") or {}
        lines.append(
            f"| {name} | {cell(acc.get('accuracy'), '{:.1%}')} "
            f"| {cell(cmp[name]['accuracy_points'], '{:+.1f}')} "
            f"| {cell(cmp[name]['agreement'], '{:.1%}')} | {cell(acc.get('macro_f1'), '{:.3f}')} "
            f"| {cell(acc.get('schema_valid_rate'), '{:.1%}')} "
            f"| {(acc.get('errors') or 'none') if acc else 'n/a'} |"
        )
    lines += ["", "![speed, memory and accuracy per variant](chart.png)", ""]
    failed = {name: entry["error"] for name, entry in variants.items() if entry.get("error")}
    if failed:
        lines += ["## Failed", ""]
        lines += [
            f"- **{name}**: `{' '.join(error.split())[:600]}`" for name, error in failed.items()
        ]
        lines.append("")
    return "\n".join(lines)


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The figures without raw samples or per-item labels: what a terminal shows."""
    brief = {}
    for name, entry in results["variants"].items():
        cells = entry.get("cells") or {}
        brief[name] = {
            "checkpoint_mib": checkpoint_mib(entry),
            "rss_after_warmup_mb": entry.get("rss_after_warmup_mb"),
            "rss_peak_mb": peak_rss_mb(entry),
            "cells": {
                k: {f: c.get(f) for f, _, _ in SPEED} | {"errors": c.get("errors")}
                for k, c in cells.items()
            },
            "accuracy": accuracy(entry),
            **({"error": entry["error"]} if entry.get("error") else {}),
        }
    return {
        "command": results["command"],
        "reference": results["reference"],
        "variants": brief,
        "ratios": comparisons(results),
        "elapsed_s": results.get("elapsed_s"),
    }


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants: dict[str, dict[str, Any]] = results["variants"]
    names, keys = list(variants), list(results["cells"])
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    width = 0.8 / max(1, len(names))

    def grouped(ax: Any, groups: list[str], value: Value, ylabel: str) -> None:
        for n, name in enumerate(names):
            xs = [i + n * width for i in range(len(groups))]
            ax.bar(xs, [value(name, g) or 0 for g in groups], width, label=name)
        ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(groups))], groups)
        ax.set_ylabel(ylabel)

    def speed(field: str) -> Value:
        return lambda name, key: ((variants[name].get("cells") or {}).get(key) or {}).get(field)

    grouped(axes[0][0], keys, speed("output_tokens_per_s"), "output tokens/s")
    grouped(axes[0][1], keys, speed("latency_p95_ms"), "p95 latency, ms")
    cmp = comparisons(results)
    memory = {"checkpoint": "checkpoint", "RSS after warm-up": "rss_after_warmup",
              "peak RSS": "rss_peak"}  # fmt: skip
    grouped(
        axes[1][0], list(memory), lambda name, g: cmp[name][memory[g]], f"× {results['reference']}"
    )
    axes[1][1].bar(
        names,
        [accuracy(variants[n]) or 0 for n in names],
        color=[f"C{i}" for i in range(len(names))],
    )
    axes[1][1].set_ylim(0, 1)
    axes[1][1].set_ylabel("BANKING77 accuracy (adapter + constraint)")
    axes[0][0].legend()
    fig.suptitle(f"Base variants, one run; reference {results['reference']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
