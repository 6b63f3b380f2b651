"""A test double for the engine, for unit tests of HTTP and validation logic only.

It replays scripted outputs; it does not generate. Serving behaviour is tested
against the real vLLM engine in ``tests/integration``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from gateway.engine.types import EngineStats, GenerationChunk, GenerationParams, LoraRef

HOLD_LIMIT_S = 10  # a held request goes on by itself then, so a failing test cannot hang


@dataclass
class ScriptedOutput:
    text: str
    finish_reason: str = "stop"


@dataclass
class FakeEngine:
    """Each generate() pops the next scripted output (or repeats the last one)."""

    outputs: list[ScriptedOutput] = field(default_factory=lambda: [ScriptedOutput("hello")])
    max_model_len: int = 1024
    ready: bool = True
    calls: list[GenerationParams] = field(default_factory=list)
    loras: list[LoraRef] = field(default_factory=list)
    fail_with: Exception | None = None  # raised on admission, as vLLM does
    on_stats: Callable[[EngineStats], None] | None = None
    hold: threading.Event | None = None  # generation waits until the test sets it

    @property
    def is_ready(self) -> bool:
        return self.ready

    async def start(self) -> None:
        self.ready = True

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        return [ord(c) % 50 for m in messages for c in m["content"]] + [1, 2]

    async def add_lora(self, lora: LoraRef) -> None:
        self.loras.append(lora)

    async def remove_lora(self, lora_id: int) -> bool:
        before = len(self.loras)
        self.loras = [x for x in self.loras if x.lora_id != lora_id]
        return len(self.loras) < before

    async def generate(self, params: GenerationParams) -> AsyncIterator[GenerationChunk]:
        self.calls.append(params)
        if self.fail_with is not None:
            raise self.fail_with
        if self.hold is not None:  # a request in flight for as long as the test needs
            await asyncio.to_thread(self.hold.wait, HOLD_LIMIT_S)
        out = self.outputs.pop(0) if len(self.outputs) > 1 else self.outputs[0]
        pieces = [out.text[i : i + 3] for i in range(0, len(out.text), 3)] or [""]
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            yield GenerationChunk(
                text=piece,
                num_prompt_tokens=len(params.prompt_token_ids),
                num_output_tokens=i + 1,
                finish_reason=out.finish_reason if last else None,
            )
