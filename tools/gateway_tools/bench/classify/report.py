"""``report.md`` and ``chart.png`` from one run's ``results.json``, summarised afresh from
its raw cells and answers (so ``--report-only`` applies the current summary code)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway_tools.bench.classify.summary import summarise_run
from gateway_tools.bench.stats import DEFINITION
from gateway_tools.bench.tables import cell


def _speed_row(version: str, s: dict[str, Any], latency: str, throughput: str) -> str:
    c1, cn, vs = s["cells"].get(latency) or {}, s["cells"].get(throughput) or {}, s["vs_reference"]
    errors = sum(c.get("errors") or 0 for c in s["cells"].values()) if s["cells"] else None
    figures = (
        (c1.get("latency_p50_ms"), "{:.0f}"), (vs["latency_p50_ms"], "{:.3f}"),
        (c1.get("latency_p95_ms"), "{:.0f}"), (vs["latency_p95_ms"], "{:.3f}"),
        (cn.get("requests_per_s"), "{:.2f}"), (vs["requests_per_s"], "{:.3f}"),
        (cn.get("latency_p50_ms"), "{:.0f}"), (vs["throughput_p50_ms"], "{:.3f}"),
        (s.get("output_tokens_mean"), "{:.1f}"), (errors, "{}"),
    )  # fmt: skip
    return f"| {version} | " + " | ".join(cell(v, fmt) for v, fmt in figures) + " |"


def _answer_row(version: str, s: dict[str, Any]) -> str:
    figures = (
        ("schema_valid_rate", "{:.1%}"), ("accuracy", "{:.1%}"), ("macro_f1", "{:.3f}"),
        ("mean_confidence", "{:.3f}"), ("confidence_p10", "{:.3f}"),
        ("confidence_p50", "{:.3f}"), ("threshold", "{:.2f}"), ("below_threshold_rate", "{:.1%}"),
        ("escalation_rate", "{:.1%}"), ("auroc", "{:.3f}"), ("top_label_brier", "{:.3f}"),
    )  # fmt: skip
    return f"| {version} | " + " | ".join(cell(s.get(k), fmt) for k, fmt in figures) + " |"


def _headline(version: str, ref: str, s: dict[str, Any], latency: str, throughput: str) -> str:
    vs = s["vs_reference"]
    return (
        f"**{version} / {ref}**: req/s at `{throughput}` ×{cell(vs['requests_per_s'], '{:.2f}')}, "
        f"p50 at `{latency}` ×{cell(vs['latency_p50_ms'], '{:.3f}')}.  "
    )


def markdown(results: dict[str, Any]) -> str:
    plan, machine, ref = results["plan"], results["machine"], results["reference"]
    summary = summarise_run(results)["versions"]
    latency, throughput = results["cells"]
    times = f"×{ref}"
    lines = [
        f"# `/v1/classify` per version: {results['adapter']} {', '.join(plan['versions'])}",
        "",
        f"Command: `{results['command']}`",
        "",
        f"Machine: {machine['platform']}, {machine['cpus']} CPUs. One gateway served every "
        "version at once, each under its own name (the registry serves one current version "
        "per name), so every figure comes from the same engine in the same run. "
        f"`{times}` is a version's figure over {ref}'s: above 1 is more, below 1 less.",
        "",
        f"Work: {plan['texts']} BANKING77 test texts (a seeded sample, seed {plan['seed']}, of "
        f"`{plan['data']}`), in {plan['rounds']} rounds. Each round: `{latency}` = "
        "concurrency 1, the versions alternating request by request; then "
        f"`{throughput}` = concurrency {plan['concurrency']}, a closed loop per version, the "
        "version order rotating from round to round. Per version "
        f"{plan['latency_requests']} requests at `{latency}`, "
        f"{plan['throughput_requests']} at `{throughput}`, after one untimed warm-up "
        f"request each. {DEFINITION}",
        "",
        "| version | served as | answer | calibration (X-Gateway-Confidence) |",
        "|---|---|---|---|",
        *(
            f"| {v} | `{e['name']}` (`{e['source']}`) | {e['answer_format']} "
            f"| {cell(e.get('calibration'), '{}')} |"
            for v, e in results["versions"].items()
        ),
        "",
        "## Speed",
        "",
        *(_headline(v, ref, s, latency, throughput) for v, s in summary.items() if v != ref),
        "",
        f"| version | `{latency}` p50 ms | {times} | `{latency}` p95 ms | {times} "
        f"| `{throughput}` req/s | {times} | `{throughput}` p50 ms | {times} "
        "| output tokens per answer | errors |",
        "|---|" + "---|" * 10,
        *(_speed_row(v, s, latency, throughput) for v, s in summary.items()),
        "",
        "![req/s and p50 latency per version](chart.png)",
        "",
        "## Answers",
        "",
        "Schema-valid: the share of every answer whose `intent`, `confidence` and "
        "`requires_human_agent` validate against the intent schema of the version's labels. "
        "The other columns count the first answer to each text: below threshold = "
        "confidence under the escalation threshold the gateway applied; escalated = "
        "`requires_human_agent` true (the threshold or an escalation label); AUROC and "
        "Brier score the confidence against whether the label was right.",
        "",
        "| version | schema-valid | accuracy | macro-F1 | mean confidence | p10 | p50 "
        "| threshold | below threshold | escalated | AUROC | Brier |",
        "|---|" + "---|" * 11,
        *(_answer_row(v, s) for v, s in summary.items()),
        "",
    ]
    if results.get("error"):
        lines += ["## Failed", "", f"`{' '.join(results['error'].split())[:800]}`", ""]
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, ref = summarise_run(results)["versions"], results["reference"]
    latency, throughput = results["cells"]
    names = list(summary)
    colors = [f"C{i}" for i in range(len(names))]
    panels = (
        (throughput, "requests_per_s", "requests_per_s", f"req/s at {throughput}", "{:.2f}"),
        (latency, "latency_p50_ms", "latency_p50_ms", f"p50 latency at {latency}, ms", "{:.0f}"),
    )
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, (key, field, ratio_key, title, fmt) in zip(axes, panels, strict=True):
        values = [(summary[n]["cells"].get(key) or {}).get(field) for n in names]
        times = [summary[n]["vs_reference"][ratio_key] for n in names]
        labels = [cell(v, fmt) + ("" if n == ref else f" (×{cell(t, '{:.2f}')})")
                  for n, v, t in zip(names, values, times, strict=True)]  # fmt: skip
        bars = ax.bar(names, [v or 0 for v in values], color=colors)
        ax.bar_label(bars, labels=labels, fontsize=8)
        ax.set_title(title)
    fig.suptitle(f"/v1/classify, {results['adapter']}: one gateway, one run (× {ref})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
