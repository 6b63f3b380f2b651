"""Deadlines: how long one request may take, waiting for a slot and engine work together.

A deadline is a point on the event loop's clock. Every wait a request makes on the
slot queue or the engine is bounded by the time left; when it runs out the wait is
cancelled and ``DeadlineExceeded`` raised. Cancelling a wait on the engine's generator
raises ``CancelledError`` inside it, which aborts the request in vLLM: the path a client
disconnect takes (``gateway.api.disconnect``), so no engine work outlives the deadline.
Each wait is bounded on its own, not the request as one block, because a stream's
steps run in two tasks (the first in the route handler, the rest in the response).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TypeVar

from gateway import errors

T = TypeVar("T")


@dataclass(frozen=True)
class Deadline:
    seconds: float  # the budget it was given, for the message
    at: float  # on the running loop's clock

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(seconds, asyncio.get_running_loop().time() + seconds)

    def left(self) -> float:
        return self.at - asyncio.get_running_loop().time()

    def exceeded(self) -> errors.DeadlineExceeded:
        return errors.DeadlineExceeded(
            f"the request did not finish within its deadline of {self.seconds:g} s; its "
            "engine work was stopped",
            hint="retry later, ask for fewer tokens, or allow more time with the "
            "X-Request-Timeout header (up to the server's request_timeout_s)",
        )

    async def bound(self, awaitable: Awaitable[T]) -> T:
        """``awaitable``'s result, or ``DeadlineExceeded`` once the deadline passes (the
        wait cancelled). A ``TimeoutError`` of the awaitable's own passes through."""
        scope = asyncio.timeout_at(self.at)
        try:
            async with scope:
                return await awaitable
        except TimeoutError:
            if scope.expired():
                raise self.exceeded() from None
            raise

    async def chunks(self, stream: AsyncGenerator[T, None]) -> AsyncIterator[T]:
        """``stream``'s items while time is left. Past the deadline the stream is closed,
        also when it has items ready that would need no wait: closing it aborts the
        engine's request."""
        async with contextlib.aclosing(stream):
            while True:
                if self.left() <= 0:
                    raise self.exceeded()
                item = await self.bound(anext(stream, None))
                if item is None:
                    return
                yield item
