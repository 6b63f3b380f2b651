"""Turning answers into labels and arms into numbers.

Prompt-only answers are parsed leniently, as a careful baseline would: code fences are
stripped, then the whole text is tried as JSON, then the first balanced ``{...}``. A
label counts only when it is a string from the label set; the schema check is the same
``jsonschema`` validation the gateway applies to constrained outputs. A decision-token
adapter asked without ``/v1/classify`` replies with its label's token, mapped back
through its manifest.

Consistency is reported three ways: over every variant, over the seen types (kinds of
rewrite training's augmentation also makes) and over the unseen types (kinds it never
makes), each as the share of items whose original and variants of that group all got
the same valid label. Confidence fields come from ``/v1/classify`` (the gateway's
probability); other arms have none, since a confidence the model writes as text is not one.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import jsonschema

from gateway.scoring import auroc, macro_f1, top_label_brier
from gateway_tools.bench.consistency.perturb import UNSEEN_TYPES
from gateway_tools.bench.stats import percentile, rounded


@dataclass(frozen=True)
class Parsed:
    is_json: bool
    is_valid: bool  # matches the intent schema
    label: str | None  # a label from the set, or None


def first_json_object(text: str) -> Any:
    """The whole text as JSON, else the first balanced ``{...}`` in it; raises ValueError."""
    cleaned = text.strip()
    if cleaned.startswith("```"):
        cleaned = cleaned.strip("`").removeprefix("json").strip()
    try:
        return json.loads(cleaned)
    except json.JSONDecodeError:
        pass
    start = cleaned.find("{")
    while start != -1:
        depth, in_string, escaped = 0, False, False
        for i in range(start, len(cleaned)):
            char = cleaned[i]
            if in_string:
                escaped = char == "\\" and not escaped
                if char == '"' and not escaped:
                    in_string = False
                continue
            if char == '"':
                in_string = True
            elif char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    try:
                        return json.loads(cleaned[start : i + 1])
                    except json.JSONDecodeError:
                        break
        start = cleaned.find("{", start + 1)
    raise ValueError("no JSON object in the answer")


def parse_answer(text: str | None, schema: dict[str, Any], labels: frozenset[str]) -> Parsed:
    if text is None:
        return Parsed(False, False, None)
    try:
        value = first_json_object(text)
    except ValueError:
        return Parsed(False, False, None)
    valid = jsonschema.Draft202012Validator(schema).is_valid(value)
    intent = value.get("intent") if isinstance(value, dict) else None
    label = intent if isinstance(intent, str) and intent in labels else None
    return Parsed(True, valid, label)


def parse_decision(text: str | None, tokens: dict[str, str]) -> Parsed:
    """A decision-token reply (``tokens``: token text -> label), surrounding spaces aside."""
    label = tokens.get(text.strip()) if text is not None else None
    return Parsed(label is not None, label is not None, label)


def _consistent(group: list[dict[str, Any]]) -> bool:
    return all(a["is_valid"] and a["label"] is not None for a in group) and (
        len({a["label"] for a in group}) == 1
    )


def consistency(
    by_item: dict[int, list[dict[str, Any]]], variants: Collection[str] | None = None
) -> float | None:
    """Share of items whose original and variants (those named in ``variants``, or all)
    agree; None when no item has such a variant."""
    groups = [
        [
            a
            for a in group
            if a["variant"] == "original" or variants is None or a["variant"] in variants
        ]
        for group in by_item.values()
    ]
    groups = [g for g in groups if len(g) > 1 or variants is None]
    return round(sum(map(_consistent, groups)) / len(groups), 4) if groups else None


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def confidence_fields(originals: list[dict[str, Any]], consistent: set[int]) -> dict[str, Any]:
    """Calibration and escalation as a client of ``/v1/classify`` sees them."""
    rated = [a for a in originals if a.get("confidence") is not None]
    confidences = [a["confidence"] for a in rated]
    correct = [a["label"] == a["gold"] for a in rated]
    flags = [a["escalated"] for a in originals if a.get("escalated") is not None]
    headers = Counter(a.get("calibration") for a in rated if a.get("calibration"))
    return {
        "mean_confidence": _mean(confidences),
        "mean_confidence_consistent": _mean(
            [a["confidence"] for a in rated if a["item"] in consistent]
        ),
        "mean_confidence_inconsistent": _mean(
            [a["confidence"] for a in rated if a["item"] not in consistent]
        ),
        "top_label_brier": round(top_label_brier(confidences, correct), 4) if rated else None,
        "auroc": rounded(auroc(confidences, correct), 4),
        "escalation_rate": _mean([float(f) for f in flags]),
        "calibration": headers.most_common(1)[0][0] if headers else None,
    }


def score_arm(answers: list[dict[str, Any]], wall_seconds: float) -> dict[str, Any]:
    """``answers``: one dict per request with item, variant, gold, parsed fields, latency
    (and, from ``/v1/classify``, confidence, escalated and the calibration header)."""
    n = len(answers)
    originals = [a for a in answers if a["variant"] == "original"]
    gold = [a["gold"] for a in originals]
    predicted = [a["label"] for a in originals]
    by_item: dict[int, list[dict[str, Any]]] = {}
    for a in answers:
        by_item.setdefault(a["item"], []).append(a)
    seen = {a["variant"] for a in answers} - UNSEEN_TYPES - {"original"}
    latencies = [a["latency_s"] for a in answers]
    tokens = [a["prompt_tokens"] for a in answers if a["prompt_tokens"] is not None]
    confusions = Counter((g, p) for g, p in zip(gold, predicted, strict=True) if p and g != p)
    return {
        "requests": n,
        "json_parse_rate": round(sum(a["is_json"] for a in answers) / n, 4) if n else None,
        "schema_valid_rate": round(sum(a["is_valid"] for a in answers) / n, 4) if n else None,
        "accuracy": round(sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold), 4)
        if gold
        else None,
        "macro_f1": round(macro_f1(gold, predicted), 4) if gold else None,
        "consistency": consistency(by_item),
        "consistency_seen": consistency(by_item, seen),
        "consistency_unseen": consistency(by_item, UNSEEN_TYPES),
        "prompt_tokens_mean": round(statistics.fmean(tokens), 1) if tokens else None,
        "latency_p50_s": rounded(percentile(latencies, 0.5), 4),
        "latency_p95_s": rounded(percentile(latencies, 0.95), 4),
        "throughput_rps": round(n / wall_seconds, 3) if wall_seconds > 0 else None,
        "wall_seconds": round(wall_seconds, 2),
        "errors": dict(Counter(a["error"] for a in answers if a["error"])),
        "top_confusions": [
            {"gold": g, "predicted": p, "count": c} for (g, p), c in confusions.most_common(5)
        ],
        **confidence_fields(originals, {i for i, group in by_item.items() if _consistent(group)}),
    }
