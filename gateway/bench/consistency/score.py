"""Turning answers into labels and arms into numbers.

Prompt-only answers are parsed leniently, as a careful baseline would: code fences are
stripped, then the whole text is tried as JSON, then the first balanced ``{...}``. A
label counts only when it is a string from the label set; the schema check is the same
``jsonschema`` validation the gateway applies to constrained outputs.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any

import jsonschema

from gateway.bench.stats import percentile, rounded
from gateway.scoring import macro_f1


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


def score_arm(answers: list[dict[str, Any]], wall_seconds: float) -> dict[str, Any]:
    """``answers``: one dict per request with item, variant, gold, parsed fields, latency."""
    n = len(answers)
    originals = [a for a in answers if a["variant"] == "original"]
    gold = [a["gold"] for a in originals]
    predicted = [a["label"] for a in originals]
    by_item: dict[int, list[dict[str, Any]]] = {}
    for a in answers:
        by_item.setdefault(a["item"], []).append(a)
    consistent = sum(
        1
        for group in by_item.values()
        if all(a["is_valid"] and a["label"] is not None for a in group)
        and len({a["label"] for a in group}) == 1
    )
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
        "consistency": round(consistent / len(by_item), 4) if by_item else None,
        "prompt_tokens_mean": round(statistics.fmean(tokens), 1) if tokens else None,
        "latency_p50_s": rounded(percentile(latencies, 0.5), 4),
        "latency_p95_s": rounded(percentile(latencies, 0.95), 4),
        "throughput_rps": round(n / wall_seconds, 3) if wall_seconds > 0 else None,
        "wall_seconds": round(wall_seconds, 2),
        "errors": dict(Counter(a["error"] for a in answers if a["error"])),
        "top_confusions": [
            {"gold": g, "predicted": p, "count": c} for (g, p), c in confusions.most_common(5)
        ],
    }
