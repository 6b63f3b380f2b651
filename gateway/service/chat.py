"""Chat completions: adapter choice, schema resolution, token budgets, validation, retry.

``prepare`` does every check that can fail on the client's input before the engine
is touched, so a bad request costs no engine time and cannot disturb others.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from gateway import errors
from gateway.common.names import excerpt
from gateway.config import Settings
from gateway.engine.types import EngineClient, GenerationChunk, GenerationParams, TokenLogprobs
from gateway.observability.metrics import GatewayMetrics
from gateway.registry.registry import AdapterRegistry
from gateway.registry.store import AdapterVersion
from gateway.service.admission import Admission, AdmissionControl
from gateway.service.fair_queue import FairQueue
from gateway.service.grammar_guard import OutlinesGuard
from gateway.service.schemas import SchemaRegistry
from gateway.service.types import ChatResult, ChatTask, PreparedChat, StreamDelta
from gateway.service.validation import ADAPTER_DEFAULT, Constraint, check_output
from gateway.tenancy import Limiter, SchemaBudget, Tenant

log = logging.getLogger(__name__)

RETRY_TEMPERATURE = 0.7
MAX_SEED = 2**63 - 1  # vLLM seeds are int64; -1 there means "no seed", so none are negative


class ChatService:
    def __init__(
        self,
        engine: EngineClient,
        adapters: AdapterRegistry,
        schemas: SchemaRegistry,
        settings: Settings,
        limiter: Limiter,
        metrics: GatewayMetrics,
    ) -> None:
        self.engine = engine
        self.adapters = adapters
        self.schemas = schemas
        self.settings = settings
        self.admission = AdmissionControl(
            limiter, adapters, metrics,
            FairQueue(settings.max_num_seqs, fair=settings.fair_share),
            SchemaBudget(settings.schema_compile_budget_per_minute),
            settings.request_timeout_s,
            capacity=settings.max_num_seqs + settings.max_waiting_requests,
            grammar_guard=OutlinesGuard(settings.structured_backend)
            if settings.structured_backend in ("outlines", "auto") else None,
        )  # fmt: skip
        # (adapter, version) -> the tenant whose fine-tuning job made it, or None; set
        # where fine-tuning is on (its job store knows).
        self.version_owner: Callable[[str, str], str | None] | None = None

    def resolve_adapter(self, model: str | None, tenant: Tenant | None) -> AdapterVersion | None:
        """Name -> current version, or ``name@version`` -> that registered version (what
        a fine-tuning job names), after the tenant's access check on the name.

        A tenant gets the same 403 for an adapter that exists but is not theirs and for
        one that does not exist, so keys cannot be used to probe other tenants' names.
        A version made by another tenant's fine-tuning job is theirs until it is made
        current: pinning it is refused alike, even for a tenant allowed every adapter.
        """
        if model is None and tenant is not None:
            model = tenant.default_adapter
        if model is None or model == self.settings.served_model_name:
            return None
        name, pinned, version = model.partition("@")
        if tenant is not None and not tenant.may_use(name):
            raise errors.AdapterForbidden(
                f"this key may not use the model {model!r}", param="model"
            )
        if pinned and not version:
            raise errors.AdapterNotFound(f"the model {model!r} names no version", param="model")
        if version and tenant is not None and self._someone_elses(name, version, tenant):
            raise errors.AdapterForbidden(
                f"this key may not use the model {model!r}", param="model"
            )
        return self.adapters.version(name, version or None)

    def _someone_elses(self, name: str, version: str, tenant: Tenant) -> bool:
        owner = self.version_owner(name, version) if self.version_owner else None
        if owner is None or owner == tenant.owner_id:  # jobs are keyed by id, not name
            return False
        alias = self.adapters.state.aliases.get(name)
        return alias is None or alias.current != version  # a current version is everyone's

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
                f"response_format.type {excerpt(kind)} is not one of text, json_object, "
                "json_schema",
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

    def prepare(self, task: ChatTask, tenant: Tenant | None = None) -> PreparedChat:
        adapter = self.resolve_adapter(task.model, tenant)
        response_format = task.response_format
        if response_format is None and adapter is not None and adapter.answer_schema is not None:
            # a structured adapter answers in the schema it was trained on (its manifest's)
            # unless the request asks for something else ({"type": "text"} included)
            name = adapter.schema_name or adapter.name
            schema = self.schemas.for_adapter(name, adapter.answer_schema)
            default = Constraint(schema=schema, origin=ADAPTER_DEFAULT)
            return self.prepare_resolved(task, adapter, default, tenant)
        origin = "request"
        if response_format is None and tenant is not None and tenant.default_schema:
            # the tenant's contract applies unless the request asks for something else
            response_format = {
                "type": "json_schema",
                "json_schema": {"name": tenant.default_schema},
            }
            origin = "tenant-default"
        constraint = self.constraint_for(response_format)
        if constraint is not None:
            constraint = replace(constraint, origin=origin)
        return self.prepare_resolved(task, adapter, constraint, tenant)

    def prepare_resolved(
        self,
        task: ChatTask,
        adapter: AdapterVersion | None,
        constraint: Constraint | None,
        tenant: Tenant | None = None,
        endpoint: str = "chat",
    ) -> PreparedChat:
        if not task.messages:
            raise errors.InvalidRequest("messages must not be empty", param="messages")
        cap = self.settings.max_tokens_cap
        owner = "this gateway's"
        if tenant is not None and tenant.max_tokens is not None and tenant.max_tokens < cap:
            cap, owner = tenant.max_tokens, "your"
        if task.max_tokens is not None and task.max_tokens > cap:
            raise errors.MaxTokensExceeded(
                f"max_tokens is over {owner} cap of {cap}",  # the client's number may be long
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
        default = task.budget or self.settings.default_max_tokens
        max_tokens = task.max_tokens or min(default, cap, room)
        if max_tokens > room:
            raise errors.PromptTooLong(
                f"prompt ({len(prompt_ids)} tokens) + max_tokens ({max_tokens}) exceeds the "
                f"context length {self.engine.max_model_len}",
                param="max_tokens",
            )
        if task.min_tokens > max_tokens:
            raise errors.InvalidRequest(
                f"min_tokens ({task.min_tokens}) is over max_tokens ({max_tokens})",
                param="min_tokens",
            )
        params = GenerationParams(
            request_id=f"chatcmpl-{uuid.uuid4().hex}",
            prompt_token_ids=prompt_ids,
            max_tokens=max_tokens,
            min_tokens=task.min_tokens,
            temperature=task.temperature,
            top_p=task.top_p,
            seed=task.seed,
            stop=task.stop,
            json_schema=constraint.schema.schema if constraint and constraint.schema else None,
            json_object=bool(constraint and constraint.json_object),
        )
        return PreparedChat(params, adapter, constraint, tenant, endpoint, task.timeout_s)

    async def complete(self, prepared: PreparedChat) -> ChatResult:
        """Generate, validate, and retry structured failures up to ``output_retries``."""
        async with self.admission.admitted(prepared) as admission:
            result = await self._complete(prepared, admission)
            admission.num_tokens = result.num_prompt_tokens + result.num_output_tokens
            return result

    async def _complete(self, prepared: PreparedChat, admission: Admission) -> ChatResult:
        params, recorder = admission.params, admission.recorder
        attempts = 1 + (self.settings.output_retries if prepared.constraint else 0)
        for attempt in range(1, attempts + 1):
            text, last, logprobs = await self._collect(params, admission)
            try:
                parsed = check_output(text, last.finish_reason, prepared.constraint)
            except errors.OutputError as exc:
                recorder.output_failed(exc.code, retrying=attempt < attempts)
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
                logprobs=logprobs,
            )
        raise AssertionError("unreachable")

    async def stream(self, prepared: PreparedChat) -> AsyncIterator[StreamDelta]:
        """Deltas as they come; a structured output is still validated at the end, and
        an invalid one ends the stream with the typed error instead of success."""
        text = ""
        async with self.admission.admitted(prepared) as admission:
            async for chunk in admission.deadline.chunks(self.engine.generate(admission.params)):
                text += chunk.text
                admission.recorder.on_chunk(chunk)
                admission.num_tokens = chunk.num_prompt_tokens + chunk.num_output_tokens
                if chunk.finish_reason is not None:
                    try:
                        check_output(text, chunk.finish_reason, prepared.constraint)
                    except errors.OutputError as exc:
                        admission.recorder.output_failed(exc.code, retrying=False)
                        raise
                yield StreamDelta.of(chunk)

    async def _collect(
        self, params: GenerationParams, admission: Admission
    ) -> tuple[str, GenerationChunk, list[TokenLogprobs] | None]:
        parts: list[str] = []
        last: GenerationChunk | None = None
        logprobs: list[TokenLogprobs] = []
        recorder = admission.recorder
        earlier = recorder.num_output_tokens  # tokens of failed attempts still count
        async for chunk in admission.deadline.chunks(self.engine.generate(params)):
            parts.append(chunk.text)
            logprobs.extend(chunk.logprobs or ())
            recorder.on_chunk(chunk, earlier)
            last = chunk
        if last is None:
            raise errors.traced(errors.EngineFailed, "the engine returned no output", log)
        asked = params.logprobs is not None or params.logprob_token_ids is not None
        return "".join(parts), last, logprobs if asked else None

    @staticmethod
    def _retry_params(params: GenerationParams, attempt: int) -> GenerationParams:
        """Greedy decoding would repeat the same failure; sample instead, reproducibly."""
        return replace(
            params,
            request_id=f"{params.request_id}-retry{attempt}",
            temperature=max(params.temperature, RETRY_TEMPERATURE),
            seed=((params.seed or 0) + attempt) % (MAX_SEED + 1),
        )
