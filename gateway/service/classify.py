"""``/v1/classify``: one support message in, one validated intent object out.

The label set, system prompt and schema come from the adapter (what its training
recorded) or, for the base model, from settings. The prompt builder lives in
``gateway.common.prompts``, shared with training, so an adapter sees at inference
exactly what it saw when trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from gateway.common.prompts import classify_messages, default_system_prompt
from gateway.registry.store import AdapterVersion
from gateway.service.chat import ChatService
from gateway.service.types import ChatTask, PreparedChat
from gateway.service.validation import Constraint
from gateway.tenancy import Tenant
from schemas import intent_model

SCHEMA_NAME = "intent_classification"


@dataclass(frozen=True)
class Classification:
    result: BaseModel
    adapter: str | None
    version: str | None
    labels: tuple[str, ...]
    num_prompt_tokens: int
    num_output_tokens: int
    attempts: int

    def as_dict(self) -> dict[str, Any]:
        return self.result.model_dump(mode="json")


@dataclass(frozen=True)
class PreparedClassify:
    """A checked classification and the label model its answer must fit."""

    chat: PreparedChat
    model: type[BaseModel]
    labels: tuple[str, ...]


class ClassifyService:
    def __init__(self, chat: ChatService, default_labels: tuple[str, ...], max_tokens: int):
        self.chat = chat
        self.default_labels = default_labels
        self.max_tokens = max_tokens

    def labels_for(self, adapter: AdapterVersion | None) -> tuple[str, ...]:
        return adapter.labels if adapter and adapter.labels else self.default_labels

    def prepare(
        self, text: str, adapter_name: str | None, tenant: Tenant | None = None
    ) -> PreparedClassify:
        """Every check that can refuse the request, done before it is admitted."""
        adapter = self.chat.resolve_adapter(adapter_name, tenant)
        labels = self.labels_for(adapter)
        model = intent_model(labels)
        schema = self.chat.schemas.for_model(model, SCHEMA_NAME)
        system_prompt = (adapter.system_prompt if adapter else None) or default_system_prompt(
            labels
        )
        task = ChatTask(messages=classify_messages(system_prompt, text), budget=self.max_tokens)
        prepared = self.chat.prepare_resolved(
            task, adapter, Constraint(schema=schema), tenant, endpoint="classify"
        )
        return PreparedClassify(prepared, model, labels)

    async def run(self, prepared: PreparedClassify) -> Classification:
        result = await self.chat.complete(prepared.chat)
        return Classification(
            result=prepared.model.model_validate(result.parsed),
            adapter=prepared.chat.adapter_name,
            version=prepared.chat.adapter_version,
            labels=prepared.labels,
            num_prompt_tokens=result.num_prompt_tokens,
            num_output_tokens=result.num_output_tokens,
            attempts=result.attempts,
        )

    async def classify(
        self, text: str, adapter_name: str | None, tenant: Tenant | None = None
    ) -> Classification:
        """``prepare`` then ``run``, for callers that count no refusals (evaluation)."""
        return await self.run(self.prepare(text, adapter_name, tenant))
