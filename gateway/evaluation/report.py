"""The adapter's ``report.md``, rendered from its manifest alone (so it can be redone)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def cell(value: Any, fmt: str) -> str:
    """A formatted value, or ``n/a`` where a split has no measurement."""
    return "n/a" if value is None else fmt.format(value)


COLUMNS = (
    ("items", "items", "{}"),
    ("accuracy", "accuracy", "{:.1%}"),
    ("macro_f1", "macro-F1", "{:.3f}"),
    ("ece", "ECE", "{:.3f}"),
    ("brier", "Brier", "{:.3f}"),
    ("auroc", "AUROC", "{:.3f}"),
    ("escalation_rate", "escalated", "{:.1%}"),
    ("auto_accuracy", "accuracy when not escalated", "{:.1%}"),
    ("schema_valid_rate", "answered", "{:.1%}"),
    ("human_agent_accuracy", "requires_human_agent agreement", "{:.1%}"),
)


def _evaluation(manifest: dict[str, Any]) -> list[str]:
    evaluation = {
        k: m for k, m in (manifest.get("evaluation") or {}).items() if isinstance(m, dict)
    }
    lines = [
        "| split | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
        *(
            f"| {name} | " + " | ".join(cell(m.get(key), fmt) for key, _, fmt in COLUMNS) + " |"
            for name, m in evaluation.items()
        ),
        "",
        "ECE: 15 equal-width confidence bins. Brier: multiclass, over every label's "
        "probability (n/a for a JSON-answer adapter, which scores only its label). AUROC: "
        "how well the confidence tells right answers from wrong ones (0.5 is chance). A "
        "failed request counts as wrong and as escalated.",
    ]
    for name, m in evaluation.items():
        if m.get("top_confusions"):
            lines += ["", f"Most confused on {name} (gold → predicted, count):", ""]
            lines += [
                f"- {c['gold']} → {c['predicted']}: {c['count']}" for c in m["top_confusions"]
            ]
    return lines


def _calibration(manifest: dict[str, Any]) -> list[str]:
    if "answer" not in manifest:
        return [
            "The adapter answers in JSON (trained before decision tokens): its confidence is "
            "the chosen label's probability under the grammar, uncalibrated, and it has no "
            "escalation threshold."
        ]
    c, e = manifest.get("calibration"), manifest.get("escalation") or {}
    lines = []
    if c:
        lines.append(
            f"Temperature {c['temperature']:.3f}, fitted on {c['items']} {c['fit_on']} items "
            f"({c['source']} path): NLL {c['nll_before']} → {c['nll_after']}, ECE "
            f"{c['ece_before']} → {c['ece_after']}."
        )
    if e.get("val_coverage") is not None:
        lines.append(
            f"Escalation threshold {e['threshold']:.4f}: the lowest confidence at which the "
            f"automatically handled validation items reach {e['target_accuracy']:.0%} accuracy "
            f"({e['val_coverage']:.1%} of them handled, {e['val_accuracy_auto']} accurate)."
            if e["threshold"] < 1
            else f"No threshold reaches {e['target_accuracy']:.0%} accuracy on validation: "
            "every message escalates (threshold 1)."
        )
    lines.append(f"Labels that always escalate: {', '.join(e.get('labels') or []) or 'none'}.")
    return lines


def render_report(manifest: dict[str, Any], charts: Sequence[str] = ()) -> str:
    training = manifest["training"]
    lines = [
        f"# Adapter `{manifest['name']}/{manifest['version']}`",
        "",
        f"Base model: {manifest['base_model']['name']} "
        f"(fingerprint `{manifest['base_model']['fingerprint'][:16]}`). "
        f"Labels: {len(manifest['labels'])}. Schema: `{manifest['schema']['name']}`. "
        f"Answer: {'decision token' if 'answer' in manifest else 'JSON (legacy)'}.",
        "",
        f"Reproduce: `{manifest['launch']}`",
        "",
        "## Evaluation (vLLM engine, adapter prompt, `/v1/classify` service)",
        "",
        *_evaluation(manifest),
        "",
        "## Calibration and escalation",
        "",
        *_calibration(manifest),
        "",
        *(f"![{name.removesuffix('.png')}]({name})" for name in charts),
        "",
        "## Training",
        "",
        f"- examples: {manifest['dataset']['train_size']} (per class: "
        f"{manifest['dataset']['per_class'] or 'all'}), epochs run: {len(training['history'])}"
        f" of {training['epochs']} ({training.get('stopped', 'completed').replace('_', ' ')})",
        f"- {training['seconds']} s: {training.get('examples_per_second', 'n/a')} examples/s, "
        f"{training['tokens_per_second']} tokens/s (every prompt token of every example; the "
        f"shared prefix is computed once per batch), bf16 autocast: {training['bf16']}",
        f"- best validation loss: {training['best_val_loss']}",
        "",
        "| epoch | train loss | validation loss |",
        "|---|---|---|",
        *(
            f"| {h['epoch']} | {h['train_loss']:.4f} | {h['val_loss']} |"
            for h in training["history"]
        ),
        "",
        "## Data checks",
        "",
        "| check | status | detail |",
        "|---|---|---|",
        *(f"| {c['check']} | {c['status']} | {c['detail']} |" for c in manifest["data_checks"]),
        "",
    ]
    return "\n".join(lines)
