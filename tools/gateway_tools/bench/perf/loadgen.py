"""Closed- and open-loop load over any ``send`` coroutine, plus the HTTP sender.

The drivers know nothing about what serves a request: the HTTP sides and the bare
engine use the same ones, so only the serving path differs between them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Record:
    """One request as the client saw it. Times are seconds from its own send."""

    ok: bool
    latency: float
    ttft: float | None = None
    output_tokens: int = 0
    error: str | None = None  # an error code or HTTP status, for the error counts
    started: float = 0.0  # perf_counter at send; the run's wall time comes from these
    prompt_tokens: int = 0  # as the server counted them (a prefill cell's prompt length)


Send = Callable[[int], Awaitable[Record]]


async def closed_loop(send: Send, requests: int, concurrency: int, tick: Callable[[], None]):
    """``concurrency`` workers send requests back to back until ``requests`` are done."""
    records: list[Record | None] = [None] * requests
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < requests:
            i = next_index
            next_index += 1
            records[i] = await send(i)
            tick()

    await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
    return [r for r in records if r is not None]


async def open_loop(send: Send, offsets: list[float], tick: Callable[[], None]) -> list[Record]:
    """Send request ``i`` at ``offsets[i]`` whatever is still in flight (arrivals do not
    wait for the server, so queueing shows in latency, not in a slower send rate)."""
    start = time.perf_counter()

    async def one(i: int, at: float) -> Record:
        delay = start + at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        record = await send(i)
        tick()
        return record

    return list(await asyncio.gather(*(one(i, at) for i, at in enumerate(offsets))))


async def send_chat(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> Record:
    """POST a streamed chat completion; TTFT is the first non-empty content delta."""
    started = time.perf_counter()
    ttft: float | None = None
    tokens = prompt_tokens = 0
    try:
        async with client.stream("POST", url, json=body) as res:
            if res.status_code != 200:
                detail = await res.aread()
                return Record(False, time.perf_counter() - started, error=_code(res, detail),
                              started=started)  # fmt: skip
            async for line in res.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    return Record(False, time.perf_counter() - started, ttft,
                                  error=str(event["error"].get("code") or "stream_error"),
                                  started=started)  # fmt: skip
                choices = event.get("choices") or []
                if ttft is None and choices and (choices[0].get("delta") or {}).get("content"):
                    ttft = time.perf_counter() - started
                if event.get("usage"):
                    tokens = int(event["usage"].get("completion_tokens") or 0)
                    prompt_tokens = int(event["usage"].get("prompt_tokens") or 0)
    except httpx.HTTPError as exc:
        return Record(False, time.perf_counter() - started, ttft, error=type(exc).__name__,
                      started=started)  # fmt: skip
    return Record(True, time.perf_counter() - started, ttft, tokens, started=started,
                  prompt_tokens=prompt_tokens)  # fmt: skip


def _code(res: httpx.Response, detail: bytes) -> str:
    try:
        return str(json.loads(detail)["error"].get("code") or res.status_code)
    except (ValueError, KeyError, TypeError, AttributeError):
        return str(res.status_code)
