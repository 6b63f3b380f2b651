"""Output validation: the last gate before anything structured is called a success."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from gateway import errors
from gateway.service.schemas import ResolvedSchema

log = logging.getLogger(__name__)


ADAPTER_DEFAULT = "adapter-default"  # the schema a structured adapter was trained on


@dataclass(frozen=True)
class Constraint:
    """What a request's output must be: a schema, any JSON object, or free text (None)."""

    schema: ResolvedSchema | None = None
    json_object: bool = False
    # where it came from: "request" (response_format), "tenant-default" (the tenant's
    # default_schema) or ADAPTER_DEFAULT (the adapter's manifest); X-Gateway-Schema-Source
    origin: str = "request"

    @property
    def name(self) -> str | None:
        if self.schema is not None:
            return self.schema.name
        return "json_object" if self.json_object else None


def check_output(text: str, finish_reason: str | None, constraint: Constraint | None) -> Any:
    """The parsed value when ``text`` satisfies ``constraint``; a typed error otherwise."""
    if finish_reason == "error":
        raise engine_stopped(text, constraint)
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


def engine_stopped(text: str, constraint: Constraint | None) -> errors.GatewayError:
    """What vLLM's ``finish_reason: "error"`` means. Before any output, for a constrained
    request, the engine failed to compile its grammar (the one such case vLLM's scheduler
    reports this way for our requests); any other is the engine's failure, not the
    client's, and is never passed on as an answer."""
    if constraint is not None and constraint.schema is not None and text == "":
        return errors.SchemaCompileFailed(
            "the engine could not build a grammar for this schema: the structured-output "
            "backend failed on it or ran past its compile timeout",
            param="response_format.json_schema.schema",
            hint="simplify the schema (fewer or smaller length bounds, repetitions and "
            "alternatives), or use a deployment with the xgrammar backend",
        )
    return errors.traced(
        errors.EngineFailed, "the engine stopped this request with an error (see its log)", log
    )
