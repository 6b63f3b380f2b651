"""Chat completions: adapter choice, schema resolution, token budgets, validation, retry.

``prepare`` does every check that can fail on the client's input before the engine
is touched, so a bad request costs no engine time and cannot disturb others.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from gateway import errors
from gateway.config import Settings
from gateway.engine.types import EngineClient, GenerationChunk, GenerationParams
from gateway.service.adapters import Adapter, AdapterCatalog
from gateway.service.schemas import SchemaRegistry
from gateway.service.validation import Constraint, check_output

RETRY_TEMPERATURE = 0.7


@dataclass(frozen=True)
class ChatTask:
    """A chat request in the service's own terms (the HTTP layer builds it)."""

    messages: list[dict[str, str]]
    model: str | None = None
    response_format: dict[str, Any] | None = None
    max_tokens: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class PreparedChat:
    params: GenerationParams
    adapter: Adapter | None
    constraint: Constraint | None

    @property
    def adapter_name(self) -> str | None:
        return self.adapter.name if self.adapter else None


@dataclass(frozen=True)
class ChatResult:
    text: str
    parsed: Any
    finish_reason: str
    num_prompt_tokens: int
    num_output_tokens: int
    attempts: int


class ChatService:
    def __init__(
        self,
        engine: EngineClient,
        adapters: AdapterCatalog,
        schemas: SchemaRegistry,
        settings: Settings,
    ) -> None:
        self.engine = engine
        self.adapters = adapters
        self.schemas = schemas
        self.settings = settings

    def constraint_for(self, response_format: dict[str, Any] | None) -> Constraint | None:
        """OpenAI ``response_format`` -> Constraint; a named schema needs no inline body."""
        if response_format is None:
            return None
        kind = response_format.get("type")
        if kind == "text":
            return None
        if kind == "json_object":
            return Constraint(json_object=True)
        if kind != "json_schema":
            raise errors.InvalidRequest(
                f"response_format.type {kind!r} is not one of text, json_object, json_schema",
                param="response_format.type",
            )
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise errors.InvalidRequest(
                "response_format.json_schema needs a name", param="response_format.json_schema"
            )
        if spec.get("schema") is None:
            return Constraint(schema=self.schemas.named(spec["name"]))
        return Constraint(schema=self.schemas.resolve(spec["name"], spec["schema"]))

    def prepare(self, task: ChatTask) -> PreparedChat:
        adapter = self.adapters.resolve(task.model)
        constraint = self.constraint_for(task.response_format)
        return self.prepare_resolved(task, adapter, constraint)

    def prepare_resolved(
        self, task: ChatTask, adapter: Adapter | None, constraint: Constraint | None
    ) -> PreparedChat:
        if not task.messages:
            raise errors.InvalidRequest("messages must not be empty", param="messages")
        cap = self.settings.max_tokens_cap
        if task.max_tokens is not None and task.max_tokens > cap:
            raise errors.MaxTokensExceeded(
                f"max_tokens {task.max_tokens} is over this gateway's cap of {cap}",
                param="max_tokens",
            )
        prompt_ids = self.engine.encode_chat(task.messages)
        room = self.engine.max_model_len - len(prompt_ids)
        if room < 1:
            raise errors.PromptTooLong(
                f"the prompt is {len(prompt_ids)} tokens; the context holds "
                f"{self.engine.max_model_len}",
                param="messages",
            )
        max_tokens = task.max_tokens or min(self.settings.default_max_tokens, room)
        if max_tokens > room:
            raise errors.PromptTooLong(
                f"prompt ({len(prompt_ids)} tokens) + max_tokens ({max_tokens}) exceeds the "
                f"context length {self.engine.max_model_len}",
                param="max_tokens",
            )
        params = GenerationParams(
            request_id=f"chatcmpl-{uuid.uuid4().hex}",
            prompt_token_ids=prompt_ids,
            max_tokens=max_tokens,
            temperature=task.temperature,
            top_p=task.top_p,
            seed=task.seed,
            stop=task.stop,
            json_schema=constraint.schema.schema if constraint and constraint.schema else None,
            json_object=bool(constraint and constraint.json_object),
            lora=adapter.lora if adapter else None,
        )
        return PreparedChat(params=params, adapter=adapter, constraint=constraint)

    async def complete(self, prepared: PreparedChat) -> ChatResult:
        """Generate, validate, and retry structured failures up to ``output_retries``."""
        params = prepared.params
        attempts = 1 + (self.settings.output_retries if prepared.constraint else 0)
        for attempt in range(1, attempts + 1):
            text, last = await self._collect(params)
            try:
                parsed = check_output(text, last.finish_reason, prepared.constraint)
            except errors.OutputError:
                if attempt == attempts:
                    raise
                params = self._retry_params(params, attempt)
                continue
            return ChatResult(
                text=text,
                parsed=parsed,
                finish_reason=last.finish_reason or "stop",
                num_prompt_tokens=last.num_prompt_tokens,
                num_output_tokens=last.num_output_tokens,
                attempts=attempt,
            )
        raise AssertionError("unreachable")

    async def stream(self, prepared: PreparedChat) -> AsyncIterator[GenerationChunk]:
        """Deltas as they come; a structured output is still validated at the end, and
        an invalid one ends the stream with the typed error instead of success."""
        text = ""
        async for chunk in self.engine.generate(prepared.params):
            text += chunk.text
            if chunk.finish_reason is not None:
                check_output(text, chunk.finish_reason, prepared.constraint)
            yield chunk

    async def _collect(self, params: GenerationParams) -> tuple[str, GenerationChunk]:
        parts: list[str] = []
        last: GenerationChunk | None = None
        async for chunk in self.engine.generate(params):
            parts.append(chunk.text)
            last = chunk
        if last is None:
            raise errors.EngineFailed("the engine returned no output")
        return "".join(parts), last

    @staticmethod
    def _retry_params(params: GenerationParams, attempt: int) -> GenerationParams:
        """Greedy decoding would repeat the same failure; sample instead, reproducibly."""
        return replace(
            params,
            request_id=f"{params.request_id}-retry{attempt}",
            temperature=max(params.temperature, RETRY_TEMPERATURE),
            seed=(params.seed or 0) + attempt,
        )
