"""``/v1/classify``: one support message in, one validated intent object out.

The label set, system prompt and schema come from the adapter (what its training
recorded) or, for the base model, from settings. The same prompt builder is what
training uses, so an adapter sees at inference exactly what it saw when trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from gateway.registry.store import AdapterVersion
from gateway.service.chat import ChatService, ChatTask
from gateway.service.validation import Constraint
from gateway.tenancy import Tenant
from schemas import intent_model

SCHEMA_NAME = "intent_classification"


def default_system_prompt(labels: tuple[str, ...]) -> str:
    return (
        "You classify customer support messages. Reply with a JSON object with the keys "
        f"intent (one of: {', '.join(labels)}), confidence (a number from 0 to 1) and "
        "requires_human_agent (true when a person should take over)."
    )


def classify_messages(system_prompt: str, text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": text}]


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


class ClassifyService:
    def __init__(self, chat: ChatService, default_labels: tuple[str, ...], max_tokens: int):
        self.chat = chat
        self.default_labels = default_labels
        self.max_tokens = max_tokens

    def labels_for(self, adapter: AdapterVersion | None) -> tuple[str, ...]:
        return adapter.labels if adapter and adapter.labels else self.default_labels

    async def classify(
        self, text: str, adapter_name: str | None, tenant: Tenant | None = None
    ) -> Classification:
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
        result = await self.chat.complete(prepared)
        return Classification(
            result=model.model_validate(result.parsed),
            adapter=adapter.name if adapter else None,
            version=adapter.version if adapter else None,
            labels=labels,
            num_prompt_tokens=result.num_prompt_tokens,
            num_output_tokens=result.num_output_tokens,
            attempts=result.attempts,
        )
