"""A JSON Schema inferred from example answers, for a task given no schema.

The rules, one per kind of value, applied to every value seen at one place in the
answers (``docs/training.md`` states them for users):

- objects: ``properties`` in the order keys first appear, ``required`` = the keys every
  object at that place has, ``additionalProperties: false``;
- strings: an ``enum`` of the values seen when there are at most ``MAX_ENUM`` distinct
  ones and each is seen about twice or more (``count >= 2 * distinct``), so a label
  field becomes a closed set and a free-text field stays ``{"type": "string"}``;
- booleans ``boolean``; whole numbers only ``integer``; other numbers ``number``;
- arrays: ``items`` inferred from every element of every array there;
- ``null`` beside other values: ``anyOf`` with ``{"type": "null"}``; values of several
  kinds: ``anyOf`` of each kind's schema.

The walk recurses once per nesting level; ``task`` refuses answers nested deeper than
the gateway accepts schemas before they get here.
"""

from __future__ import annotations

from typing import Any

MAX_ENUM = 64  # more distinct strings than this is free text, not a label set


def infer_schema(answers: list[Any]) -> dict[str, Any]:
    """The schema of ``answers`` (parsed JSON values, usually objects)."""
    return _infer(answers)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _infer(values: list[Any]) -> dict[str, Any]:
    by_kind: dict[str, list[Any]] = {}
    for value in values:
        by_kind.setdefault(_kind(value), []).append(value)
    if "integer" in by_kind and "number" in by_kind:  # 1 and 1.5 at one place: numbers
        by_kind["number"] += by_kind.pop("integer")
    nullable = by_kind.pop("null", None) is not None
    branches = [_one_kind(kind, group) for kind, group in by_kind.items()]
    if nullable:
        branches.append({"type": "null"})
    if not branches:
        return {}
    return branches[0] if len(branches) == 1 else {"anyOf": branches}


def _one_kind(kind: str, values: list[Any]) -> dict[str, Any]:
    if kind == "string":
        distinct = sorted(set(values))
        if len(distinct) <= MAX_ENUM and len(values) >= 2 * len(distinct):
            return {"type": "string", "enum": distinct}
        return {"type": "string"}
    if kind == "array":
        items = [item for value in values for item in value]
        return {"type": "array", "items": _infer(items)} if items else {"type": "array"}
    if kind == "object":
        return _object(values)
    return {"type": kind}


def _object(values: list[dict[str, Any]]) -> dict[str, Any]:
    keys: dict[str, list[Any]] = {}
    for value in values:
        for key, item in value.items():
            keys.setdefault(key, []).append(item)
    required = [key for key, seen in keys.items() if len(seen) == len(values)]
    return {
        "type": "object",
        "properties": {key: _infer(seen) for key, seen in keys.items()},
        "required": required,
        "additionalProperties": False,
    }
