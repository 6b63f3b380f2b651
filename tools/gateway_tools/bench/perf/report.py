"""Ratios, target checks, the Markdown table and a chart from one run's pooled cells."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway_tools.bench.perf.paired import LIMIT_MS
from gateway_tools.bench.provenance import describe
from gateway_tools.bench.stats import DEFINITION
from gateway_tools.bench.tables import cell

Pooled = dict[str, dict[str, dict[str, Any]]]  # side -> cell key -> pooled summary


def get(pooled: Pooled, side: str, key: str, field: str) -> float | None:
    return (pooled.get(side, {}).get(key) or {}).get(field)


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def side_names(pooled: Pooled) -> list[str]:
    """bare, vllm, then the gateway arms in the order they ran."""
    return [s for s in ("bare", "vllm") if s in pooled] + [
        s for s in pooled if s.startswith("gateway")
    ]


def gateway_side(pooled: Pooled) -> str:
    """The gateway arm compared with bare and vllm serve: the first one run (the first of
    ``--grouped-lora``; plain "gateway" in reports from before the arms)."""
    return next((side for side in pooled if side.startswith("gateway")), "gateway")


def comparisons(pooled: Pooled) -> dict[str, dict[str, Any]]:
    """Per cell: gateway/bare and gateway/vllm for throughput, and latency deltas."""
    gw = gateway_side(pooled)
    keys = list(pooled.get(gw) or next(iter(pooled.values()), {}))
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        row: dict[str, Any] = {}
        for other in ("bare", "vllm"):
            row[f"rps_vs_{other}"] = ratio(
                get(pooled, gw, key, "requests_per_s"),
                get(pooled, other, key, "requests_per_s"),
            )
            row[f"tps_vs_{other}"] = ratio(
                get(pooled, gw, key, "output_tokens_per_s"),
                get(pooled, other, key, "output_tokens_per_s"),
            )
            row[f"p95_vs_{other}"] = ratio(
                get(pooled, gw, key, "latency_p95_ms"),
                get(pooled, other, key, "latency_p95_ms"),
            )
            p50, base = (
                get(pooled, gw, key, "latency_p50_ms"),
                get(pooled, other, key, "latency_p50_ms"),
            )
            row[f"p50_added_ms_vs_{other}"] = (
                None if p50 is None or base is None else round(p50 - base, 2)
            )
        out[key] = row
    return out


def _target(name: str, measured: Any, goal: str, met: bool | None) -> dict[str, Any]:
    return {"target": name, "goal": goal, "measured": measured, "met": met}


def overhead_target(overhead: dict[str, Any] | None) -> dict[str, Any]:
    """The 5 ms serving-overhead target from the paired phase: decided by the bootstrap
    interval of the median paired difference, or "undecided" with the pairs it needs."""
    name = "added p50 latency vs bare, 1-token answers at c1, paired (median, 95% CI), ms"
    goal = f"CI upper bound <= {LIMIT_MS:g}"
    if not overhead or overhead.get("verdict") is None:
        return {**_target(name, None, goal, None), "verdict": "not measured"}
    measured = f"{overhead['median_ms']} [{overhead['ci_low_ms']}, {overhead['ci_high_ms']}]"
    row = _target(name, measured, goal, {"met": True, "not met": False}.get(overhead["verdict"]))
    if overhead["verdict"] == "undecided":
        row["verdict"] = verdict_text(overhead)
    return row


def verdict_text(overhead: dict[str, Any]) -> str:
    """The paired phase's verdict, with the pairs an undecided one would need."""
    more = overhead["more_pairs"]
    if overhead["verdict"] == "undecided" and more:
        return f"undecided, about {more} more pairs needed"
    return overhead["verdict"]


def targets(
    pooled: Pooled, extras: dict[str, Any], top: int, high: int, overhead: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The issues' targets at the largest adapter mix ``top`` and concurrency ``high``,
    for the first gateway arm; ``overhead`` is the paired phase's result."""
    big = f"schema-a{top}-c{high}"
    gw = gateway_side(pooled)
    cmp = comparisons(pooled)
    rows = []

    def at_least(name: str, value: float | None, goal: float) -> None:
        rows.append(_target(name, value, f">= {goal}", None if value is None else value >= goal))

    def at_most(name: str, value: float | None, goal: float, unit: str = "") -> None:
        met = None if value is None else value <= goal
        rows.append(_target(name, value, f"<= {goal}{unit}", met))

    at_least(f"gateway/bare requests/s, {big}", cmp.get(big, {}).get("rps_vs_bare"), 0.95)
    rows.append(overhead_target(overhead))
    at_most(
        "added p50 latency vs bare, schema-a1-c1, ms",
        cmp.get("schema-a1-c1", {}).get("p50_added_ms_vs_bare"),
        5,
    )
    at_least(f"gateway/vllm-serve requests/s, {big}", cmp.get(big, {}).get("rps_vs_vllm"), 1.0)
    at_most(f"gateway/vllm-serve p95 latency, {big}", cmp.get(big, {}).get("p95_vs_vllm"), 1.0)
    one = f"schema-a1-c{high}"
    at_least(
        f"{gw} {top} adapters / 1 adapter requests/s (c{high}, schema)",
        ratio(get(pooled, gw, big, "requests_per_s"), get(pooled, gw, one, "requests_per_s")),
        0.95,
    )
    fixed_base = f"free-a0-c{high}-fixed"  # every request writes max_tokens: like with like
    for key in dict.fromkeys((f"free-a1-c{high}-fixed", f"free-a{top}-c{high}-fixed")):
        at_least(
            f"{gw} LoRA / base output tokens/s, {key} (same lengths)",
            ratio(
                get(pooled, gw, key, "output_tokens_per_s"),
                get(pooled, gw, fixed_base, "output_tokens_per_s"),
            ),
            0.8,
        )
    base = f"schema-a0-c{high}"
    for key in dict.fromkeys((one, big)):  # output tokens/s: the base writes other lengths
        at_least(
            f"{gw} LoRA / base output tokens/s, {key}",
            ratio(
                get(pooled, gw, key, "output_tokens_per_s"),
                get(pooled, gw, base, "output_tokens_per_s"),
            ),
            0.8,
        )
    at_most(
        f"{gw} time to first token, 1 adapter / base, ~1,000-token prompt at c1",
        ratio(
            get(pooled, gw, "free-a1-c1-t1-long", "ttft_p50_ms"),
            get(pooled, gw, "free-a0-c1-t1-long", "ttft_p50_ms"),
        ),
        1.2,
    )
    cache = extras.get("schema_cache") or {}
    hit = cache.get("hit") or {}
    compiles = hit.get("compilations_delta")
    rows.append(
        _target(
            "schema compilations on repeated schema (gateway counter)",
            compiles,
            "== 0",
            None if compiles is None else compiles == 0,
        )
    )
    at_most(
        "gateway time per output token, schema / free (a1, c1)",
        ratio(
            get(pooled, gw, "schema-a1-c1", "tpot_p50_ms"),
            get(pooled, gw, "free-a1-c1", "tpot_p50_ms"),
        ),
        1.05,
    )
    gateway_mb = get(pooled, gw, big, "rss_mb")
    bare_mb = get(pooled, "bare", big, "rss_mb")
    at_most(
        f"gateway resident memory over bare engine at {big}, MB",
        None if gateway_mb is None or bare_mb is None else round(gateway_mb - bare_mb, 1),
        300,
        " MB",
    )
    return rows


def markdown(result: dict[str, Any], sections: Sequence[str] = ()) -> str:
    """The main table, then ``sections`` (Markdown lines), then the targets."""
    pooled: Pooled = result["pooled"]
    sides = side_names(pooled)
    gw = gateway_side(pooled)
    cmp = result["comparisons"]
    lines = [
        "# Serving performance: gateway, bare engine, vllm serve",
        "",
        f"Command: `{result['command']}`",
        "",
        describe(result.get("machine") or {}),
        "",
        DEFINITION,
        "",
        "| cell | " + " | ".join(f"{s} req/s" for s in sides) + " | "
        + " | ".join(f"{s} p50 / p95 ms" for s in sides)
        + f" | {gw} TTFT p50 ms | gw/bare req/s | gw/vllm req/s | gw/vllm p95 | errors |",
        "|---|" + "---|" * (2 * len(sides) + 5),
    ]  # fmt: skip
    for key, row in cmp.items():
        rps = [cell(get(pooled, s, key, "requests_per_s"), "{:.2f}") for s in sides]
        lat = [
            f"{cell(get(pooled, s, key, 'latency_p50_ms'), '{:.0f}')} / "
            f"{cell(get(pooled, s, key, 'latency_p95_ms'), '{:.0f}')}"
            for s in sides
        ]
        errors = "/".join(str(get(pooled, s, key, "errors") or 0) for s in sides)
        lines.append(
            f"| {key} | " + " | ".join(rps) + " | " + " | ".join(lat)
            + f" | {cell(get(pooled, gw, key, 'ttft_p50_ms'), '{:.0f}')}"
            + f" | {cell(row.get('rps_vs_bare'), '{:.3f}')}"
            + f" | {cell(row.get('rps_vs_vllm'), '{:.3f}')}"
            + f" | {cell(row.get('p95_vs_vllm'), '{:.3f}')} | {errors} |"
        )  # fmt: skip
    lines += [*sections, "", f"Targets ({gw} is the gateway arm compared):", ""]
    lines += ["| target | goal | measured | met |", "|---|---|---|---|"]
    for t in result["targets"]:
        met = t.get("verdict") or {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {t['goal']} | {cell(t['measured'], '{}')} | {met} |")
    return "\n".join(lines) + "\n"


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pooled: Pooled = result["pooled"]
    sides = side_names(pooled)
    keys = [k for k in result["comparisons"] if "-t" not in k]
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.7 * len(keys)), 8), sharex=True)
    width = 0.8 / max(1, len(sides))
    for n, side in enumerate(sides):
        xs = [i + n * width for i in range(len(keys))]
        axes[0].bar(xs, [get(pooled, side, k, "requests_per_s") or 0 for k in keys], width,
                    label=side)  # fmt: skip
        axes[1].bar(xs, [get(pooled, side, k, "latency_p95_ms") or 0 for k in keys], width,
                    label=side)  # fmt: skip
    axes[0].set_ylabel("requests/s")
    axes[1].set_ylabel("p95 latency, ms")
    axes[1].set_xticks([i + width * (len(sides) - 1) / 2 for i in range(len(keys))])
    axes[1].set_xticklabels(keys, rotation=60, ha="right", fontsize=8)
    axes[0].legend()
    axes[0].set_title("gateway vs bare AsyncLLM vs vllm serve (same engine arguments)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
