"""What a training file teaches: a task is a schema plus examples.

``resolve_task`` reads the answers and the config and says which of three tasks it is:

- ``classification``: labelled rows, or answers that are the intent object
  (``intent``, ``confidence``, ``requires_human_agent``), or ``labels`` given: the
  decision-token recipe (or ``answer=json``), served by ``/v1/classify``;
- ``structured``: answers that are JSON objects: the adapter learns to write them, and
  the schema they satisfy is recorded in the manifest and enforced when it is served;
- ``text``: plain-text answers: a chat adapter served without a schema.

The schema of a structured task is ``schema_name`` (a file of ``schemas/json``),
``schema_file`` (a JSON Schema file), ``schema_model`` (a Pydantic model,
``module:Class``), or, with none given, inferred from the answers
(``schema_infer``). Whichever it is, it must be one the gateway would accept and its
grammar compiler can enforce (``schema_source``), checked before anything loads.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Literal

import jsonschema
from pydantic import BaseModel

from gateway.common.schema_checks import depth
from gateway.common.usage import UsageError
from gateway.training.config import SCHEMAS_DIR, TrainConfig
from gateway.training.examples import Example
from gateway.training.schema_infer import infer_schema
from gateway.training.schema_source import (
    MAX_DEPTH,
    check_enforceable,
    import_model,
    model_schema,
    read_schema,
)

Kind = Literal["classification", "structured", "text"]
INTENT_KEYS = frozenset({"intent", "confidence", "requires_human_agent"})
CLASSIFICATION_SCHEMA = "intent_classification"


@dataclass(frozen=True)
class Task:
    kind: Kind
    schema: dict[str, Any] | None = None  # structured: the answers' JSON Schema
    schema_name: str | None = None  # what X-Gateway-Schema names when it is served
    source: str | None = None  # structured: "named", "file", "model" or "inferred"
    model: type[BaseModel] | None = None  # the Pydantic model, when one was given

    def problem(self, answer: str) -> str | None:
        """Why ``answer`` fails this structured task's schema, or None when it passes."""
        if self.schema is None:
            return None
        try:
            value = json.loads(answer)
        except json.JSONDecodeError as exc:
            return f"not JSON ({exc.msg})"
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(value))
        if error is not None:
            path = "/".join(str(p) for p in error.absolute_path) or "(root)"
            return f"{path}: {error.message[:200]}"
        if self.model is not None:
            try:
                self.model.model_validate(value)
            except ValueError as exc:
                return str(exc).splitlines()[0][:200]
        return None

    @cached_property
    def _validator(self) -> Any:
        """The gateway's validator for the schema (format checks included), built once."""
        schema = self.schema or {}
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        return cls(schema, format_checker=cls.FORMAT_CHECKER)

    def canonical(self, example: Example) -> Example:
        """The example with every JSON answer written as the constrained decoder writes
        it: no whitespace, keys in schema order. An adapter trained on another spelling
        would fight its own constraint when served."""
        if self.schema is None or example.messages is None:
            return example
        messages = tuple(
            replace(m, content=self.write(m.content)) if m.role == "assistant" else m
            for m in example.messages
        )
        return replace(example, completion=self.write(example.completion), messages=messages)

    def write(self, answer: str) -> str:
        value = _object(answer)
        if value is None or self.schema is None:
            return answer
        ordered = _ordered(value, self.schema, self.schema)
        return json.dumps(ordered, ensure_ascii=False, separators=(",", ":"))

    def stratum(self, example: Example) -> str | None:
        """What a split keeps in proportion: the label, or a structured answer's first
        top-level enum field (a ticket's category, an utterance's intent)."""
        if self.kind == "classification":
            return example.label
        field = _first_enum_field(self.schema) if self.schema else None
        value = _object(example.completion) if field else None
        return None if value is None else str(value.get(field))

    def manifest_block(self) -> dict[str, Any] | None:
        """The manifest's ``schema`` block for structured and text tasks (the gateway
        constrains requests without ``response_format`` to ``json``)."""
        if self.kind == "text":
            return None
        return {"name": self.schema_name, "source": self.source, "json": self.schema}


def _object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def answer_kind(example: Example) -> str:
    """``json`` when every trained answer is a JSON object, ``text`` when none is."""
    if example.messages is None:
        return "json"  # a labelled row: its answer is the intent object
    kinds = {"json" if _object(a) is not None else "text" for a in example.answers}
    if len(kinds) > 1:
        raise UsageError(
            f"{example.source}: some answers are JSON objects and some plain text; a task's "
            "answers are all one or the other"
        )
    return kinds.pop()


def resolve_task(cfg: TrainConfig, examples: list[Example]) -> Task:
    """The task ``examples`` teach under ``cfg``; every mistake is a ``UsageError``."""
    kinds = {e.source: answer_kind(e) for e in examples}
    firsts = {kind: next(s for s, k in kinds.items() if k == kind) for kind in set(kinds.values())}
    if len(firsts) > 1:
        raise UsageError(
            f"{firsts['text']}: the answer is plain text, but {firsts['json']}'s is a JSON "
            "object: a file holds one task, with all answers JSON objects or all plain text"
        )
    kind = next(iter(firsts), "json")
    given = cfg.schema_file or cfg.schema_model or cfg.schema_name
    if cfg.answer in ("decision_token", "json") or (
        cfg.answer == "auto" and kind == "json" and _is_classification(cfg, examples)
    ):
        if kind == "text":
            raise UsageError(f"{firsts['text']}: answer={cfg.answer} needs JSON answers")
        if given not in (None, CLASSIFICATION_SCHEMA):
            raise UsageError(
                f"answer={cfg.answer} classifies with the {CLASSIFICATION_SCHEMA} schema; a "
                "schema of your own trains answer=structured (answer=auto does)"
            )
        return Task("classification", schema_name=CLASSIFICATION_SCHEMA)
    if given == CLASSIFICATION_SCHEMA:
        raise UsageError(f"{CLASSIFICATION_SCHEMA} is the schema of answer=decision_token or json")
    if cfg.labels or cfg.labels_file:
        raise UsageError(
            "labels and labels_file are for classification; these answers are not the "
            f"intent object (keys {sorted(INTENT_KEYS)}), so the task is answer=structured"
        )
    if cfg.answer == "text" or (cfg.answer == "auto" and kind == "text"):
        if given:
            raise UsageError("plain-text answers are trained without a schema; drop the schema")
        return Task("text")
    if kind == "text":
        raise UsageError(f"{firsts['text']}: answer=structured needs answers that are JSON objects")
    return _structured(cfg, examples)


def _is_classification(cfg: TrainConfig, examples: list[Example]) -> bool:
    if cfg.schema_file or cfg.schema_model or cfg.schema_name not in (None, CLASSIFICATION_SCHEMA):
        return False
    if cfg.schema_name == CLASSIFICATION_SCHEMA or cfg.labels or cfg.labels_file:
        return True
    return all(
        e.messages is None or all(set(_object(a) or {}) == INTENT_KEYS for a in e.answers)
        for e in examples
    )


def _structured(cfg: TrainConfig, examples: list[Example]) -> Task:
    model: type[BaseModel] | None = None
    if cfg.schema_model:
        model = import_model(cfg.schema_model)
        schema, name, source = model_schema(model), model.__name__, "model"
        where = f"schema_model {cfg.schema_model}"
    elif cfg.schema_file:
        schema, name, source = read_schema(cfg.schema_file), cfg.schema_file.stem, "file"
        where = str(cfg.schema_file)
    elif cfg.schema_name:
        path = SCHEMAS_DIR / f"{cfg.schema_name}.json"
        schema, name, source, where = read_schema(path), cfg.schema_name, "named", cfg.schema_name
    else:
        answers = [_object(a) for e in examples for a in e.answers]
        deep = next((e.source for e in examples for a in e.answers
                     if depth(_object(a), MAX_DEPTH) > MAX_DEPTH // 2), None)  # fmt: skip
        if deep is not None:
            raise UsageError(f"{deep}: the answer nests deeper than {MAX_DEPTH // 2} levels")
        schema, name, source = infer_schema(answers), cfg.name, "inferred"
        where = "the schema inferred from the answers"
    check_enforceable(schema, where)
    return Task("structured", schema, _schema_name(name), source, model)


def _schema_name(text: str) -> str:
    """A name the gateway may echo in a header (OpenAI's rule for schema names)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)[:64] or "answer"


def _deref(schema: Any, root: dict[str, Any]) -> dict[str, Any]:
    for _ in range(MAX_DEPTH):  # a reference cycle ends here, not in a loop
        ref = schema.get("$ref") if isinstance(schema, dict) else None
        if not (isinstance(ref, str) and ref.startswith("#")):
            break
        node: Any = root
        for part in filter(None, ref[1:].split("/")):
            node = node.get(part) if isinstance(node, dict) else None
        schema = node
    return schema if isinstance(schema, dict) else {}


def _properties(value: dict[str, Any], schema: dict[str, Any], root: dict[str, Any]) -> dict:
    """The ``properties`` that describe ``value``: the schema's own, else those of the
    first ``anyOf``/``oneOf``/``allOf`` branch that names every key it has."""
    if isinstance(schema.get("properties"), dict):
        return schema["properties"]
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(key) or []:
            props = _deref(branch, root).get("properties")
            if isinstance(props, dict) and set(value) <= set(props):
                return props
    return {}


def _ordered(value: Any, schema: Any, root: dict[str, Any]) -> Any:
    schema = _deref(schema, root)
    if isinstance(value, dict):
        props = _properties(value, schema, root)
        keys = [k for k in props if k in value] + [k for k in value if k not in props]
        return {k: _ordered(value[k], props.get(k, {}), root) for k in keys}
    if isinstance(value, list):
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        return [_ordered(item, items, root) for item in value]
    return value


def _first_enum_field(schema: dict[str, Any]) -> str | None:
    for key, prop in (schema.get("properties") or {}).items():
        if isinstance(prop, dict) and "enum" in _deref(prop, schema):
            return key
    return None
