"""From a run's raw cells and answers to the figures per version and the after/before ratios.

Speed: the rounds of each cell pooled (``perf.stats.merge``: summed work over summed time,
percentiles over every sample). Answers: schema validity and output tokens over every
answer; accuracy, confidence and escalation over the first answer to each text, so a
text asked in both cells counts once.
"""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from gateway_tools.bench.consistency.score import score_arm
from gateway_tools.bench.perf.report import ratio
from gateway_tools.bench.perf.stats import merge
from gateway_tools.bench.stats import percentile, rounded

ANSWER_FIELDS = ("accuracy", "macro_f1", "mean_confidence", "escalation_rate", "auroc",
                 "top_label_brier", "calibration")  # fmt: skip
# (ratio key, cell role, pooled field): role "latency" is the c1 cell, "throughput" the cN one
RATIOS = (
    ("requests_per_s", "throughput", "requests_per_s"),
    ("latency_p50_ms", "latency", "latency_p50_ms"),
    ("latency_p95_ms", "latency", "latency_p95_ms"),
    ("throughput_p50_ms", "throughput", "latency_p50_ms"),
)


def first_answers(answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first answer to each text, in the order they were asked."""
    seen: set[int] = set()
    out = []
    for answer in answers:
        if answer["item"] not in seen:
            seen.add(answer["item"])
            out.append(answer)
    return out


def _mean(values: list[float], digits: int) -> float | None:
    return round(statistics.fmean(values), digits) if values else None


def answer_figures(answers: list[dict[str, Any]]) -> dict[str, Any]:
    """What a router sees in the answers: validity, tokens, accuracy, confidence spread,
    and the share under the escalation threshold the gateway applied."""
    if not answers:
        return {"answers": 0}
    every = score_arm(answers, 0.0)
    firsts = first_answers(answers)
    once = score_arm(firsts, 0.0)
    rated = [a for a in firsts if a.get("confidence") is not None]
    confidences = [a["confidence"] for a in rated]
    thresholds = Counter(a["threshold"] for a in rated)
    return {
        "answers": len(answers),
        "texts": len(firsts),
        "schema_valid_rate": every["schema_valid_rate"],
        "errors": every["errors"],
        "output_tokens_mean": _mean(
            [a["output_tokens"] for a in answers if "output_tokens" in a], 2
        ),
        "prompt_tokens_mean": every["prompt_tokens_mean"],
        **{key: once[key] for key in ANSWER_FIELDS},
        "confidence_p10": rounded(percentile(confidences, 0.1), 4),
        "confidence_p50": rounded(percentile(confidences, 0.5), 4),
        "threshold": thresholds.most_common(1)[0][0] if thresholds else None,
        "below_threshold_rate": _mean([float(a["confidence"] < a["threshold"]) for a in rated], 4),
    }


def pooled(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each cell's rounds pooled, raw samples left out."""
    cells = {cell: merge(runs) for cell, runs in (entry.get("cells") or {}).items()}
    return {cell: {k: v for k, v in m.items() if k != "samples"} for cell, m in cells.items()}


def summarise_run(results: dict[str, Any]) -> dict[str, Any]:
    """Per version its pooled cells, answer figures and ratios over the reference version
    (``after / before``: above 1 is more req/s, below 1 a lower latency)."""
    latency_cell, throughput_cell = results["cells"]
    roles = {"latency": latency_cell, "throughput": throughput_cell}
    versions = {
        version: {"cells": pooled(entry), **answer_figures(entry.get("answers") or [])}
        for version, entry in results["versions"].items()
    }
    reference = versions.get(results["reference"]) or {"cells": {}}

    def figure(summary: dict[str, Any], role: str, field: str) -> float | None:
        return (summary["cells"].get(roles[role]) or {}).get(field)

    for summary in versions.values():
        summary["vs_reference"] = {
            key: ratio(figure(summary, role, field), figure(reference, role, field))
            for key, role, field in RATIOS
        }
    return {"reference": results["reference"], "versions": versions}
