"""Output validation: the last gate before anything structured is called a success."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway import errors
from gateway.service.schemas import ResolvedSchema


@dataclass(frozen=True)
class Constraint:
    """What a request's output must be: a schema, any JSON object, or free text (None)."""

    schema: ResolvedSchema | None = None
    json_object: bool = False

    @property
    def name(self) -> str | None:
        if self.schema is not None:
            return self.schema.name
        return "json_object" if self.json_object else None


def check_output(text: str, finish_reason: str | None, constraint: Constraint | None) -> Any:
    """The parsed value when ``text`` satisfies ``constraint``; a typed error otherwise."""
    if constraint is None:
        return None
    if finish_reason == "length":
        raise errors.OutputTruncated(
            "the output hit max_tokens before the JSON was complete",
            raw_output=text,
            hint="raise max_tokens, or tighten the schema (maxLength, maximum, maxItems)",
        )
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise errors.OutputInvalid(
            f"the output is not valid JSON ({exc.msg} at char {exc.pos})", raw_output=text
        ) from exc
    if constraint.json_object and not isinstance(value, dict):
        raise errors.OutputInvalid("the output is JSON but not an object", raw_output=text)
    if constraint.schema is not None:
        problem = constraint.schema.check(value)
        if problem is not None:
            raise errors.OutputInvalid(
                f"the output does not match schema {constraint.schema.name!r}: {problem}",
                raw_output=text,
            )
    return value
