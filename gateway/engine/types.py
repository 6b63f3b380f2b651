"""What the service layer hands the engine and gets back. No vLLM imports here, so the
service (and its unit tests) can depend on these without loading the engine."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.common.prompts import DecisionToken


@dataclass(frozen=True)
class LoraRef:
    """One adapter as the engine knows it: vLLM wants a stable, unique integer id."""

    name: str
    lora_id: int
    path: str


@dataclass(frozen=True)
class GenerationParams:
    """One generation: prompt already tokenised, constraint already resolved."""

    request_id: str
    prompt_token_ids: list[int]
    max_tokens: int
    min_tokens: int = 0  # no end of sequence before this many tokens
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    json_schema: dict[str, Any] | None = None
    json_object: bool = False
    lora: LoraRef | None = None
    # Log-probabilities to return with each generated token: the ``logprobs`` most likely
    # (0: the sampled token only), and/or these ids' (a classify request's label tokens).
    logprobs: int | None = None
    logprob_token_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class TokenLogprobs:
    """One generated token and the log-probabilities asked for at its position, as plain
    floats: ``logprobs`` maps every returned id (the sampled one included) to its
    log-probability over the whole vocabulary, after any structured-output mask."""

    token_id: int
    text: str
    logprobs: dict[int, float]


@dataclass
class GenerationChunk:
    """A delta of generated text; the last one carries ``finish_reason``."""

    text: str
    num_prompt_tokens: int
    num_output_tokens: int
    finish_reason: str | None = None
    logprobs: list[TokenLogprobs] | None = None  # one per token of this delta, when asked


@dataclass(frozen=True)
class EngineStats:
    """One engine step's scheduler state, bridged from vLLM's own stats."""

    num_running: int
    num_waiting: int
    kv_cache_usage: float  # 0..1
    num_active_adapters: int  # adapters in the running batch
    queued: tuple[tuple[str, float], ...] = ()  # (request id, seconds queued) of finished ones
    # LoRA names (``name@version``) with requests running / waiting, as vLLM's scheduler has them
    running_adapters: tuple[str, ...] = ()
    waiting_adapters: tuple[str, ...] = ()


class EngineClient(Protocol):
    """The engine as the service sees it. ``VllmEngine`` is the real one."""

    max_model_len: int
    on_stats: Callable[[EngineStats], None] | None
    # What the loaded model really quantized (read from the engine once started).
    quantization: dict[str, Any] | None
    # Which LoRA path and decode kernel the engine process runs (``plugin.status``).
    lora_path: dict[str, Any] | None

    @property
    def is_ready(self) -> bool: ...

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]: ...

    def encode_text(self, text: str) -> list[int]: ...

    def decision_tokens(self, labels: tuple[str, ...]) -> tuple[DecisionToken, ...]: ...

    def generate(self, params: GenerationParams) -> AsyncGenerator[GenerationChunk, None]:
        """Closing or cancelling the generator aborts the request in the engine."""
        ...

    async def add_lora(self, lora: LoraRef) -> None: ...

    async def remove_lora(self, lora_id: int) -> bool: ...
