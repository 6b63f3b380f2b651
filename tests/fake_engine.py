"""A test double for the engine, for unit tests of HTTP and validation logic only.

It replays scripted outputs; it does not generate. Serving behaviour is tested
against the real vLLM engine in ``tests/integration``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import string
import threading
import zlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.common.prompts import DecisionToken, decision_tokens
from gateway.engine.types import (
    EngineStats,
    GenerationChunk,
    GenerationParams,
    LoraRef,
    TokenLogprobs,
)

HOLD_LIMIT_S = 10  # a held request goes on by itself then, so a failing test cannot hang
PIECE = 3  # characters per generated "token"
SAMPLED_IDS = 100_000  # ids of generated pieces start here: never a label token's id
CODES = ["".join(pair) for pair in itertools.product(string.ascii_uppercase, repeat=2)]


@dataclass
class ScriptedOutput:
    text: str
    finish_reason: str = "stop"
    # Log-probability of each generated piece, when the request asks for ``logprobs``;
    # unscripted pieces get ``default_logprob``.
    token_logprobs: list[float] | None = None


def default_logprob(prompt_token_ids: list[int], token_id: int) -> float:
    """A stand-in for the model's opinion: fixed for a prompt and token, different for
    different prompts, in (-10, 0]."""
    digest = zlib.crc32(f"{prompt_token_ids}|{token_id}".encode())
    return -(digest % 10_000) / 1_000


class FakeTokenizer:
    """One token per character (its code point), except that two capital letters are one
    token (1000 + their index): labels with distinct first letters get first-token
    decision tokens, and labels that share one get the codes AA, AB, ..."""

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        ids, i = [], 0
        while i < len(text):
            if text[i : i + 2] in CODES:
                ids.append(1000 + CODES.index(text[i : i + 2]))
                i += 2
            else:
                ids.append(ord(text[i]))
                i += 1
        return {"input_ids": ids}

    def decode(self, ids: list[int]) -> str:
        return "".join(CODES[i - 1000] if 1000 <= i < 1000 + len(CODES) else chr(i) for i in ids)


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
    # Generation stalls before this piece (0: before the first) until it is cancelled, as a
    # request stuck in the engine would; HOLD_LIMIT_S ends a stall that nothing cancels.
    stall_at: int | None = None
    gate: asyncio.Semaphore | None = None  # each generation takes a permit before it starts
    running: set[str] = field(default_factory=set)  # request ids generating now
    aborted: list[str] = field(default_factory=list)  # closed or cancelled before they finished
    quantization: dict[str, Any] | None = None
    lora_path: dict[str, Any] | None = None  # as plugin.status() reports it
    # Each generate() asking for ``logprob_token_ids`` pops the next list (one value per
    # requested id, in order); when none is left, ``default_logprob`` answers.
    label_logprobs: list[list[float]] = field(default_factory=list)
    tokenizer: FakeTokenizer = field(default_factory=FakeTokenizer)

    @property
    def is_ready(self) -> bool:
        return self.ready

    async def start(self) -> None:
        self.ready = True

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        return [ord(c) % 50 for m in messages for c in m["content"]] + [1, 2]

    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer(text)["input_ids"]

    def decision_tokens(self, labels: tuple[str, ...]) -> tuple[DecisionToken, ...]:
        return decision_tokens(self.tokenizer, labels)

    async def add_lora(self, lora: LoraRef) -> None:
        self.loras.append(lora)

    async def remove_lora(self, lora_id: int) -> bool:
        before = len(self.loras)
        self.loras = [x for x in self.loras if x.lora_id != lora_id]
        return len(self.loras) < before

    async def generate(self, params: GenerationParams) -> AsyncGenerator[GenerationChunk, None]:
        """Like vLLM's: cancelling or closing it mid-way aborts the request (``aborted``)."""
        self.calls.append(params)
        if self.fail_with is not None:
            raise self.fail_with
        self.running.add(params.request_id)
        try:
            async with contextlib.aclosing(self._pieces(params)) as pieces:
                async for chunk in pieces:
                    yield chunk
        except (asyncio.CancelledError, GeneratorExit):
            self.aborted.append(params.request_id)
            raise
        finally:
            self.running.discard(params.request_id)

    async def _pieces(self, params: GenerationParams) -> AsyncGenerator[GenerationChunk, None]:
        if self.hold is not None:  # a request in flight for as long as the test needs
            await asyncio.to_thread(self.hold.wait, HOLD_LIMIT_S)
        if self.gate is not None:
            await self.gate.acquire()
        out = self.outputs.pop(0) if len(self.outputs) > 1 else self.outputs[0]
        pieces = [out.text[i : i + PIECE] for i in range(0, len(out.text), PIECE)] or [""]
        requested = self._requested(params)
        for i, piece in enumerate(pieces):
            if i == self.stall_at:
                await asyncio.sleep(HOLD_LIMIT_S)
            last = i == len(pieces) - 1
            yield GenerationChunk(
                text=piece,
                num_prompt_tokens=len(params.prompt_token_ids),
                num_output_tokens=i + 1,
                finish_reason=out.finish_reason if last else None,
                logprobs=self._logprobs(params, out, i, piece, requested),
            )

    def _requested(self, params: GenerationParams) -> dict[int, float]:
        ids = params.logprob_token_ids or ()
        if not ids:
            return {}
        if self.label_logprobs:
            return dict(zip(ids, self.label_logprobs.pop(0), strict=True))
        return {i: default_logprob(params.prompt_token_ids, i) for i in ids}

    @staticmethod
    def _logprobs(
        params: GenerationParams, out: ScriptedOutput, index: int, piece: str,
        requested: dict[int, float],
    ) -> list[TokenLogprobs] | None:  # fmt: skip
        if params.logprobs is None and params.logprob_token_ids is None:
            return None
        token_id = SAMPLED_IDS + index
        scripted = out.token_logprobs
        own = (
            scripted[index]
            if scripted is not None and index < len(scripted)
            else default_logprob(params.prompt_token_ids, token_id)
        )
        return [TokenLogprobs(token_id, piece, {token_id: own, **requested})]
