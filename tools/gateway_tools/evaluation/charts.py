"""The evaluation report's two charts: a reliability diagram and the coverage curve.

``reliability.png``: per confidence bin (15, as ECE), the accuracy of its answers
against their mean confidence; a calibrated adapter sits on the diagonal.
``coverage.png``: the share of messages handled automatically against the accuracy on
them, as the threshold moves, with the adapter's default threshold marked.
Drawn by ``gateway-tools eval charts ADAPTER_DIR`` from what ``gateway eval`` wrote.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.calibration import coverage_curve
from gateway.common.usage import UsageError
from gateway.evaluation.metrics import Item
from gateway.scoring import ece, reliability_bins


def _answered(gold: list[str], items: list[Item]) -> tuple[list[float], list[bool]]:
    pairs = [
        (item.confidence or 0.0, item.predicted == g)
        for g, item in zip(gold, items, strict=True)
        if item.error is None
    ]
    return [c for c, _ in pairs], [ok for _, ok in pairs]


def _reliability(ax: Any, splits: dict[str, tuple[list[float], list[bool]]]) -> None:
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="calibrated")
    for name, (confidences, correct) in splits.items():
        full = [b for b in reliability_bins(confidences, correct) if b.count]
        ax.plot([b.confidence for b in full], [b.accuracy for b in full], marker="o",
                label=f"{name} (ECE {ece(confidences, correct):.3f})")  # fmt: skip
        for b in full:
            ax.annotate(str(b.count), (b.confidence, b.accuracy), fontsize=6,
                        xytext=(3, -8), textcoords="offset points")  # fmt: skip
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="mean confidence in bin",
           ylabel="accuracy in bin (numbers: answers)",
           title="Reliability (15 equal-width bins)")  # fmt: skip
    ax.legend(loc="upper left", fontsize=8)


def _coverage(
    ax: Any, splits: dict[str, tuple[list[float], list[bool]]], escalation: dict[str, Any]
) -> None:
    threshold = escalation.get("threshold")
    for name, (confidences, correct) in splits.items():
        curve = coverage_curve(confidences, correct)
        line = ax.plot([c for _, c, _ in curve], [a for _, _, a in curve], label=name)[0]
        at = [(c, a) for t, c, a in curve if threshold is not None and t >= threshold]
        if at:
            ax.scatter(*at[-1], color=line.get_color(), zorder=3)
            ax.annotate(f"threshold {threshold:.2f}", at[-1], fontsize=7,
                        xytext=(5, -12), textcoords="offset points")  # fmt: skip
    if escalation.get("target_accuracy") is not None:
        ax.axhline(escalation["target_accuracy"], linestyle=":", color="grey", label="target")
    ax.set(xlim=(0, 1.02), xlabel="coverage (share handled without a person)",
           ylabel="accuracy on the handled messages",
           title="Coverage against accuracy as the threshold moves")  # fmt: skip
    ax.legend(loc="lower left", fontsize=8)


def write_charts(
    gold: dict[str, list[str]],
    answers: dict[str, list[Item]],
    escalation: dict[str, Any] | None,
    out: Path,
) -> list[str]:
    """Both charts over every split that has answers; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = {name: _answered(gold[name], answers[name]) for name in gold}
    splits = {name: pair for name, pair in splits.items() if pair[0]}
    if not splits:
        return []
    charts = {
        "reliability.png": lambda ax: _reliability(ax, splits),
        "coverage.png": lambda ax: _coverage(ax, splits, escalation or {}),
    }
    for name, draw in charts.items():
        fig, ax = plt.subplots(figsize=(6, 5))
        draw(ax)
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
    return list(charts)


def _item(row: dict[str, Any]) -> Item:
    """One ``eval_predictions.jsonl`` row as the charts read it (answer and confidence)."""
    return Item(
        row["predicted"], row["confidence"], None, None, row["escalation_reason"], row["error"]
    )


def draw_adapter_charts(adapter_dir: Path) -> list[str]:
    """The charts of an evaluated adapter, from what ``gateway eval`` left in its folder
    (``manifest.json``, ``eval_predictions.jsonl``); ``report.md`` is written again with
    them linked. Returns the chart file names."""
    from gateway.evaluation.report import render_report

    manifest_path, predictions = (
        adapter_dir / "manifest.json",
        adapter_dir / "eval_predictions.jsonl",
    )
    for path in (manifest_path, predictions):
        if not path.is_file():
            raise UsageError(f"{path}: not found (run `gateway eval` for this adapter first)")
    manifest = json.loads(manifest_path.read_text())
    gold: dict[str, list[str]] = {}
    answers: dict[str, list[Item]] = {}
    for line in predictions.read_text().splitlines():
        row = json.loads(line)
        gold.setdefault(row["split"], []).append(row["gold"] or "")
        answers.setdefault(row["split"], []).append(_item(row))
    charts = write_charts(gold, answers, manifest.get("escalation"), adapter_dir)
    (adapter_dir / "report.md").write_text(render_report(manifest, charts))
    return charts
