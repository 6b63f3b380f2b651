"""The service's request and answer vocabulary, apart from the code that acts on it.

Admission and the chat service both speak it without importing each other, and the
HTTP layer builds requests and reads answers without knowing the engine's types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.engine.types import GenerationChunk, GenerationParams, TokenLogprobs
from gateway.registry.store import AdapterVersion
from gateway.service.validation import Constraint
from gateway.tenancy import Tenant


@dataclass(frozen=True)
class ChatTask:
    """A chat request in the service's own terms (the HTTP layer builds it)."""

    messages: list[dict[str, str]]
    model: str | None = None
    response_format: dict[str, Any] | None = None
    max_tokens: int | None = None
    min_tokens: int = 0
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    budget: int | None = None  # the server's own default (e.g. classify), clamped to caps
    timeout_s: float | None = None  # the client's deadline; None or more: the server's


@dataclass(frozen=True)
class PreparedChat:
    """A checked request, pinned to the adapter version current when it was admitted."""

    params: GenerationParams
    adapter: AdapterVersion | None
    constraint: Constraint | None
    tenant: Tenant | None = None  # None: open mode (no keys, no limits)
    endpoint: str = "chat"
    timeout_s: float | None = None  # the client's deadline; admission clamps it

    @property
    def adapter_name(self) -> str | None:
        return self.adapter.name if self.adapter else None

    @property
    def adapter_version(self) -> str | None:
        return self.adapter.version if self.adapter else None


@dataclass(frozen=True)
class ChatResult:
    text: str
    parsed: Any
    finish_reason: str
    num_prompt_tokens: int
    num_output_tokens: int
    attempts: int
    logprobs: list[TokenLogprobs] | None = None  # of the last attempt, when asked for


@dataclass(frozen=True)
class StreamDelta:
    """Text generated since the last delta; the last one carries ``finish_reason``.
    Token counts are running totals for the request."""

    text: str
    num_prompt_tokens: int
    num_output_tokens: int
    finish_reason: str | None = None

    @classmethod
    def of(cls, chunk: GenerationChunk) -> StreamDelta:
        return cls(
            chunk.text, chunk.num_prompt_tokens, chunk.num_output_tokens, chunk.finish_reason
        )
