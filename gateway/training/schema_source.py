"""Where a structured task's schema comes from, and the check that it can be served.

A JSON Schema file (``schema_file``, or a named one of ``schemas/json``) or a Pydantic
model (``schema_model``, ``module:Class``); ``check_enforceable`` then applies the
checks the gateway applies to any schema (``gateway.common.schema_checks``) and builds
it with the engine's grammar compiler, so an adapter never records a schema its gateway
would refuse. Every failure is a one-line ``UsageError``.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel

from gateway.common.schema_checks import check_patterns, depth, external_refs, wire_unsafe_integer
from gateway.common.usage import UsageError
from gateway.errors import GatewayError

MAX_DEPTH = 32  # the gateway's default max_schema_depth: a deeper schema is refused there


def read_schema(path: Path) -> dict[str, Any]:
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UsageError(f"schema_file {path} does not exist") from exc
    except (OSError, ValueError, RecursionError) as exc:  # a folder, not UTF-8, not JSON
        raise UsageError(f"schema_file {path} is not a JSON file: {exc}") from exc
    if not isinstance(schema, dict):
        raise UsageError(f"schema_file {path} must hold a JSON object (a JSON Schema)")
    return schema


def import_model(spec: str) -> type[BaseModel]:
    """``module:Class`` -> the Pydantic model, with the working directory importable (as
    ``python -m`` would have it) so a model beside the data is found."""
    module_name, _, attribute = spec.partition(":")
    added = str(Path.cwd()) not in sys.path
    if added:
        sys.path.insert(0, str(Path.cwd()))
    try:
        found: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except Exception as exc:  # the user's module: any failure of theirs is theirs
        reason = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise UsageError(
            f"schema_model {spec}: cannot import it ({type(exc).__name__}: {reason})"
        ) from exc
    finally:
        if added:
            sys.path.remove(str(Path.cwd()))
    if not (isinstance(found, type) and issubclass(found, BaseModel)):
        raise UsageError(f"schema_model {spec} is not a Pydantic model class")
    return found


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    try:
        return model.model_json_schema()
    except Exception as exc:  # PydanticInvalidForJsonSchema and the like
        raise UsageError(f"schema_model {model.__name__} has no JSON Schema: {exc}") from exc


def check_enforceable(schema: dict[str, Any], where: str) -> None:
    """The schema is valid, describes objects, passes the checks the gateway applies to a
    schema, and the engine's grammar compiler (xgrammar, where installed) builds it."""
    try:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        cls.check_schema(schema)
    except SchemaError as exc:
        raise UsageError(f"{where} is not a valid JSON Schema: {exc.message[:200]}") from exc
    if schema.get("type") != "object":
        raise UsageError(f"{where} must describe a JSON object (top-level type object)")
    if depth(schema, MAX_DEPTH) > MAX_DEPTH:
        raise UsageError(f"{where} nests deeper than {MAX_DEPTH} levels")
    refs = external_refs(schema)
    if refs:
        raise UsageError(f"{where}: only local '#/...' references can be enforced; found {refs[0]}")
    if wire_unsafe_integer(schema) is not None:
        raise UsageError(f"{where} holds an integer outside the 64-bit range the engine carries")
    try:
        check_patterns(schema, "schema")
    except GatewayError as exc:
        raise UsageError(f"{where}: {exc.message}") from exc
    _compile(schema, where)


def _compile(schema: dict[str, Any], where: str) -> None:
    try:
        import xgrammar
    except ImportError:  # a training-only install: the gateway checks it when it serves
        return
    try:
        xgrammar.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False)
    except Exception as exc:  # xgrammar raises RuntimeError with its C++ message
        reason = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"{where}: the engine cannot enforce it ({reason})") from exc
