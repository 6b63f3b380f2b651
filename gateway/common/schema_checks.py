"""Checks on schemas a client sends, before anything compiles or runs them: nesting
depth, regexes (invalid, huge, or open to catastrophic backtracking), integers the
engine cannot carry, and remote references. Every walk is iterative, so hostile
nesting cannot blow the stack. Serving checks request schemas with them, and training
an adapter's answer schema, so an adapter never records one its gateway would refuse.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from gateway import errors
from gateway.common.names import excerpt


def depth(value: Any, limit: int) -> int:
    """Nesting depth, iterative so hostile input cannot blow the stack."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        if isinstance(node, dict):
            stack.extend((child, level + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, level + 1) for child in node)
    return deepest


MAX_PATTERN_CHARS = 1000
# A group holding a variable quantifier, itself repeated: (a+)+, (\w*)*, (x+y){1,9}.
# Python's backtracking ``re`` (which validation uses) can take exponential time on
# these, so a client could stall the event loop with one crafted pattern.
_NESTED_QUANTIFIER = re.compile(r"\([^()]*(?:[+*]|\{\d*,\d*\})[^()]*\)(?:[+*]|\{\d*,\d*\})")


def nests_quantifiers(pattern: str) -> bool:
    """Escapes and character classes are reduced to one plain character first, so the
    ``+`` in ``[A-Za-z0-9+/]`` or ``\\+`` is not taken for a quantifier."""
    simple = re.sub(r"\\.", "e", pattern)
    simple = re.sub(r"\[\^?\]?[^\]]*\]", "c", simple)
    return bool(_NESTED_QUANTIFIER.search(simple))


def _objects(value: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object inside ``value``, iteratively (hostile nesting cannot recurse)."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _patterns(value: Any) -> list[str]:
    """Every regex in a schema: ``pattern`` values and ``patternProperties`` keys."""
    found: list[str] = []
    for node in _objects(value):
        if isinstance(node.get("pattern"), str):
            found.append(node["pattern"])
        if isinstance(node.get("patternProperties"), dict):
            found.extend(k for k in node["patternProperties"] if isinstance(k, str))
    return found


def check_patterns(schema: Any, param: str) -> None:
    """Refuse regexes that are invalid, huge, or open to catastrophic backtracking."""
    for pattern in _patterns(schema):
        if len(pattern) > MAX_PATTERN_CHARS:
            raise errors.SchemaTooLarge(
                f"a pattern is {len(pattern)} characters; the limit is {MAX_PATTERN_CHARS}",
                param=param,
            )
        try:
            re.compile(pattern)
        except re.error as exc:
            raise errors.SchemaInvalid(f"pattern {excerpt(pattern)} is not a valid regex: {exc}",
                                       param=param) from exc  # fmt: skip
        if nests_quantifiers(pattern):
            raise errors.SchemaUnsupported(
                f"pattern {excerpt(pattern)} nests quantifiers (e.g. (a+)+), which can take "
                "exponential time to check; rewrite it without a quantified group that "
                "itself repeats",
                param=param,
            )


# What msgpack, which carries each request to vLLM's engine core, can encode.
WIRE_INTEGERS = (-(2**63), 2**64 - 1)


def wire_unsafe_integer(value: Any) -> int | None:
    """The first integer a schema holds outside ``WIRE_INTEGERS`` (a ``maxLength`` or an
    ``enum`` value of 2**64, say): vLLM would fail to send the request to its engine core,
    a 500 for what is the client's input."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, int) and not isinstance(node, bool):
            if not WIRE_INTEGERS[0] <= node <= WIRE_INTEGERS[1]:
                return node
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None


def external_refs(value: Any) -> list[str]:
    refs = (node.get("$ref") for node in _objects(value))
    return [ref for ref in refs if isinstance(ref, str) and not ref.startswith("#")]


def uses_keyword(schema: Any, keyword: str) -> bool:
    """Whether any object in ``schema`` has ``keyword`` as a key."""
    return any(keyword in node for node in _objects(schema))


# outlines unrolls a counted repetition into its regex; inside a JSON string each copy can
# hold an escaped quote, and the DFA doubles with each copy past about this many.
OUTLINES_MAX_COUNT = 12
_COUNTS = re.compile(r"\{(\d+)(?:,(\d*))?\}")


def outlines_hazard(schema: Any) -> str | None:
    """The schema feature most likely to blow up outlines' automaton, in words, for the
    message of a refusal; ``None`` when no such feature is found."""
    for node in _objects(schema):
        for key in ("minLength", "maxLength"):
            bound = node.get(key)
            if isinstance(bound, int) and bound > OUTLINES_MAX_COUNT:
                return (
                    f"{key} {bound} on a string (outlines unrolls each counted character; "
                    f"more than {OUTLINES_MAX_COUNT} double its automaton with each one)"
                )
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            counts = [int(n) for group in _COUNTS.findall(pattern) for n in group if n]
            if counts and max(counts) > OUTLINES_MAX_COUNT:
                return (
                    f"pattern {excerpt(pattern)} repeats {max(counts)} times (outlines "
                    "unrolls counted repetitions into its automaton)"
                )
    return None
