"""Schema resolution: turn a request's ``response_format`` into one checked, cached
schema with a ready validator. Work per distinct schema happens once (keyed by a
canonical hash); every request after that is a dictionary lookup.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel

from gateway import errors
from gateway.common.digest import canonical_digest, canonical_json
from gateway.common.names import excerpt
from gateway.common.schema_checks import (
    check_patterns,
    depth,
    external_refs,
    wire_unsafe_integer,
)
from gateway.service.schema_names import NAME_PARAM, NAME_RULE, check_name, is_schema_name
from schemas import NAMED_MODELS

MESSAGE_CHARS = 300  # third-party messages quote schema and output values: bounded


@dataclass(frozen=True)
class ResolvedSchema:
    """A schema the gateway has accepted: what the engine enforces and what we validate."""

    name: str
    schema: dict[str, Any]
    digest: str
    validator: Any
    model: type[BaseModel] | None = None
    inline: bool = False  # sent in a request, so its name is the client's, not an operator's

    def check(self, value: Any) -> str | None:
        """The first validation error as a readable string, or None when valid."""
        error = jsonschema.exceptions.best_match(self.validator.iter_errors(value))
        if error is not None:
            path = "/".join(str(p) for p in error.absolute_path) or "(root)"
            return excerpt(f"{path}: {error.message}", MESSAGE_CHARS)
        if self.model is not None:
            try:
                self.model.model_validate(value)
            except Exception as exc:
                return excerpt(str(exc), MESSAGE_CHARS)
        return None


class SchemaRegistry:
    """Named schemas (``schemas/``) plus an LRU cache of inline schemas by digest."""

    def __init__(
        self,
        *,
        labels: tuple[str, ...],
        schemas_dir: Path | None,
        max_bytes: int,
        max_depth: int,
        cache_size: int = 512,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self._cache: OrderedDict[str, ResolvedSchema] = OrderedDict()
        self._cache_size = cache_size
        self.on_event: Callable[[str], None] = lambda _: None  # "hit" / "compile", for metrics
        self.num_compiles = 0
        self.num_cache_hits = 0
        self._named: dict[str, ResolvedSchema] = {}
        for name, factory in NAMED_MODELS.items():
            self.register_model(name, factory(labels))
        if schemas_dir is not None and schemas_dir.is_dir():
            for file in sorted(schemas_dir.glob("*.json")):
                if not is_schema_name(file.stem):  # it could never be requested
                    raise ValueError(f"schema file {file}: the name must be {NAME_RULE}")
                schema = json.loads(file.read_text(encoding="utf-8"))
                self._named.setdefault(file.stem, self._build(file.stem, schema, None))

    @property
    def names(self) -> list[str]:
        return sorted(self._named)

    def register_model(self, name: str, model: type[BaseModel]) -> ResolvedSchema:
        resolved = self._build(name, model.model_json_schema(), model)
        self._named[name] = resolved
        return resolved

    def named(self, name: str) -> ResolvedSchema:
        check_name(name)
        try:
            return self._named[name]
        except KeyError:
            raise errors.SchemaNotFound(
                f"no schema named {name!r}; known: {', '.join(self.names)}", param=NAME_PARAM
            ) from None

    def for_model(self, model: type[BaseModel], name: str) -> ResolvedSchema:
        """A schema for a Pydantic model built at run time (e.g. an adapter's label set)."""
        return self._cached(name, model.model_json_schema(), model)

    def for_adapter(self, name: str, schema: dict[str, Any]) -> ResolvedSchema:
        """A structured adapter's answer schema (its manifest's), checked like a request's
        schema and cached by digest, under the name the adapter's training gave it."""
        return self._cached(name, schema, None)

    def resolve(self, name: str, schema: Any) -> ResolvedSchema:
        """Check an inline schema from a request and return its cached form."""
        check_name(name)
        if not isinstance(schema, dict):
            raise errors.SchemaInvalid(
                "the schema must be a JSON object", param="response_format.json_schema.schema"
            )
        return self._cached(name, schema, None, inline=True)

    def _cached(
        self,
        name: str,
        schema: dict[str, Any],
        model: type[BaseModel] | None,
        inline: bool = False,
    ) -> ResolvedSchema:
        param = "response_format.json_schema.schema"
        if depth(schema, self.max_depth) > self.max_depth:
            raise errors.SchemaInvalid(
                f"the schema nests deeper than {self.max_depth} levels", param=param
            )
        # One serialisation serves both the size limit and the cache key (hot path).
        canonical = canonical_json(schema)
        size = len(canonical)
        if size > self.max_bytes:
            raise errors.SchemaTooLarge(
                f"the schema is {size} bytes; the limit is {self.max_bytes}",
                param=param,
            )
        digest = hashlib.sha256(canonical).hexdigest()
        key = f"{'inline' if inline else 'model'}:{name}:{digest}"
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            self.num_cache_hits += 1
            self.on_event("hit")
            return hit
        resolved = replace(self._build(name, schema, model, digest), inline=inline)
        self.on_event("compile")
        self._cache[key] = resolved
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return resolved

    def _build(
        self,
        name: str,
        schema: dict[str, Any],
        model: type[BaseModel] | None,
        digest: str | None = None,
    ) -> ResolvedSchema:
        param = "response_format.json_schema.schema"
        if depth(schema, self.max_depth) > self.max_depth:
            raise errors.SchemaInvalid(
                f"the schema nests deeper than {self.max_depth} levels", param=param
            )
        check_patterns(schema, param)
        huge = wire_unsafe_integer(schema)
        if huge is not None:
            raise errors.SchemaUnsupported(
                f"the schema holds the integer {excerpt(str(huge), 40)}, outside the 64-bit "
                "range the engine can carry",
                param=param,
            )
        refs = external_refs(schema)
        if refs:
            raise errors.SchemaUnsupported(
                f"only local '#/...' references are supported; found {excerpt(refs[0])}",
                param=param,
            )
        try:
            cls = jsonschema.validators.validator_for(
                schema, default=jsonschema.Draft202012Validator
            )
            cls.check_schema(schema)
        except SchemaError as exc:
            raise errors.SchemaInvalid(
                f"not a valid JSON Schema: {excerpt(exc.message, MESSAGE_CHARS)}",
                param=param,
            ) from exc
        self.num_compiles += 1
        return ResolvedSchema(
            name=name,
            schema=schema,
            digest=digest or canonical_digest(schema),
            validator=cls(schema, format_checker=cls.FORMAT_CHECKER),
            model=model,
        )
