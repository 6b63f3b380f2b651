"""``report.md`` and PNG charts from ``results.json``: what people read after a run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from gateway_tools.bench.stats import DEFINITION
from gateway_tools.bench.tables import cell

COLUMNS = (
    ("json_parse_rate", "JSON parse", "{:.1%}"),
    ("schema_valid_rate", "schema-valid", "{:.1%}"),
    ("accuracy", "accuracy", "{:.1%}"),
    ("macro_f1", "macro-F1", "{:.3f}"),
    ("consistency", "consistency", "{:.1%}"),
    ("consistency_seen", "seen types", "{:.1%}"),
    ("consistency_unseen", "unseen types", "{:.1%}"),
    ("prompt_tokens_mean", "prompt tokens", "{:.0f}"),
    ("latency_p50_s", "p50 s", "{:.2f}"),
    ("latency_p95_s", "p95 s", "{:.2f}"),
    ("throughput_rps", "req/s", "{:.2f}"),
)


CONFIDENCE_COLUMNS = (
    ("mean_confidence", "mean confidence", "{:.3f}"),
    ("mean_confidence_consistent", "on consistent items", "{:.3f}"),
    ("mean_confidence_inconsistent", "on inconsistent items", "{:.3f}"),
    ("top_label_brier", "Brier (top label)", "{:.3f}"),
    ("auroc", "AUROC", "{:.3f}"),
    ("escalation_rate", "escalated", "{:.1%}"),
    ("calibration", "X-Gateway-Confidence", "{}"),
)


def table(results: dict[str, Any], columns: tuple[tuple[str, str, str], ...] = COLUMNS) -> str:
    lines = [
        "| arm | " + " | ".join(title for _, title, _ in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name, m in results["arms"].items():
        cells = " | ".join(cell(m.get(key), fmt) for key, _, fmt in columns)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


def confidence_table(results: dict[str, Any]) -> list[str]:
    """Only the arms that report a gateway confidence (``/v1/classify``)."""
    rated = {n: m for n, m in results["arms"].items() if m.get("mean_confidence") is not None}
    if not rated:
        return []
    return [
        "Confidence and escalation (`/v1/classify` arms; on the original texts, escalation "
        "over every request). Brier and AUROC score the confidence of the returned label "
        "against whether it was right.",
        "",
        table({"arms": rated}, CONFIDENCE_COLUMNS),
        "",
    ]


def best_arm(results: dict[str, Any]) -> str:
    return max(results["arms"], key=lambda n: results["arms"][n]["accuracy"] or 0.0)


CORRECTION = {
    True: "Input correction (`classify_input_correction`, docs/adapters.md) on: "
    "`/v1/classify` read each message in the adapter's training spelling.",
    False: "Input correction (`classify_input_correction`) off: `/v1/classify` read each "
    "message as sent.",
    None: "Input correction: as the gateway at that address is configured.",
}


def render(results: dict[str, Any], out: Path) -> Path:
    charts = write_charts(results, out)
    meta = results["meta"]
    best = best_arm(results)
    lines = [
        "# Consistency benchmark",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Data: {meta['items']} items ({meta['per_class']} per class, seed {meta['seed']}) "
        f"from `{meta['data']}`, each with {meta['variants'] - 1} meaning-preserving variants "
        f"({', '.join(meta['perturbations'])}); {meta['requests_per_arm']} requests per arm. "
        f"Adapter `{meta['adapter']}`, few-shot k={meta['k']}, gateway `{meta['gateway']}`. "
        f"{CORRECTION[meta.get('input_correction')]}",
        "",
        "Accuracy and macro-F1 are on the original texts; JSON/schema rates over every request; "
        "consistency is the share of items whose variants all got the same valid label. "
        "Seen types are kinds of rewrite training's augmentation also makes; unseen types "
        f"({', '.join(meta.get('unseen_types') or []) or 'none in this run'}) are kinds it "
        "never makes, so they measure generalisation. " + DEFINITION,
        "",
        table(results),
        "",
        *confidence_table(results),
        f"![validity, accuracy and consistency per arm]({charts[0].name})",
        f"![latency against prompt tokens]({charts[1].name})",
        f"![confusions of the best arm]({charts[2].name})",
        "",
        f"Most confused label pairs of the best arm (`{best}`):",
        "",
        *(
            f"- {c['gold']} → {c['predicted']}: {c['count']}"
            for c in results["arms"][best]["top_confusions"]
        ),
        "",
        "Errors per arm: "
        + "; ".join(f"`{n}` {m['errors'] or 'none'}" for n, m in results["arms"].items()),
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def write_charts(results: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(results["arms"])
    metrics = [("schema_valid_rate", "schema-valid"), ("accuracy", "accuracy"),
               ("consistency_seen", "consistency, seen types"),
               ("consistency_unseen", "consistency, unseen types")]  # fmt: skip
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(metrics)
    for i, (key, title) in enumerate(metrics):
        values = [results["arms"][a].get(key) or 0 for a in arms]
        xs = [x + i * width for x in range(len(arms))]
        bars = ax.bar(xs, values, width, label=title)
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in values], fontsize=7)
    ax.set_xticks([x + width * (len(metrics) - 1) / 2 for x in range(len(arms))], arms,
                  rotation=15)  # fmt: skip
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("share")
    ax.legend(loc="upper left")
    ax.set_title("Validity, accuracy and consistency per arm")
    fig.tight_layout()
    bars_path = out / "arms.png"
    fig.savefig(bars_path, dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm in arms:
        m = results["arms"][arm]
        if m["prompt_tokens_mean"] is not None and m["latency_p50_s"] is not None:
            ax.scatter(m["prompt_tokens_mean"], m["latency_p50_s"], s=60)
            ax.annotate(arm, (m["prompt_tokens_mean"], m["latency_p50_s"]), fontsize=8,
                        xytext=(5, 5), textcoords="offset points")  # fmt: skip
    ax.set_xlabel("prompt tokens per request (mean)")
    ax.set_ylabel("latency p50 (s)")
    ax.set_title("Latency against prompt size")
    fig.tight_layout()
    latency_path = out / "latency_vs_prompt.png"
    fig.savefig(latency_path, dpi=120)
    plt.close(fig)

    best = best_arm(results)
    originals = [a for a in results["answers"][best] if a["variant"] == "original"]
    wrong = Counter(a["gold"] for a in originals if a["label"] != a["gold"])
    shown = [label for label, _ in wrong.most_common(15)] or sorted({a["gold"] for a in originals})[
        :15
    ]
    predicted = sorted({a["label"] or "(invalid)" for a in originals if a["gold"] in shown})
    grid = [[sum(1 for a in originals if a["gold"] == g and (a["label"] or "(invalid)") == p)
             for p in predicted] for g in shown]  # fmt: skip
    fig, ax = plt.subplots(figsize=(max(6, len(predicted) * 0.45), max(4, len(shown) * 0.4)))
    ax.imshow(grid, cmap="Blues")
    ax.set_xticks(range(len(predicted)), predicted, rotation=90, fontsize=7)
    ax.set_yticks(range(len(shown)), shown, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold (most often wrong)")
    ax.set_title(f"Confusions of the best arm: {best}")
    fig.tight_layout()
    confusion_path = out / "confusion.png"
    fig.savefig(confusion_path, dpi=120)
    plt.close(fig)
    return [bars_path, latency_path, confusion_path]
