"""Cancel a non-streamed request's engine work when its client goes away.

FastAPI keeps running a handler after the client disconnects, so without this a
client that gives up (timeout, closed tab, load balancer) still costs a full
generation. Cancelling the task raises ``CancelledError`` inside ``AsyncLLM.generate``,
which aborts the request in vLLM; admission records it as ``cancelled``. (Streams need
no help: Starlette stops the body iterator, which closes the same chain.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from fastapi import Request

from gateway import errors

T = TypeVar("T")
POLL_S = 0.2


async def cancel_on_disconnect(
    request: Request, work: Coroutine[Any, Any, T], poll_s: float = POLL_S
) -> T:
    """``poll_s``: how often the client is checked; tests pass 0 instead of waiting."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll_s)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                raise errors.ClientDisconnected("the client closed the connection")
    except asyncio.CancelledError:  # the server itself is cancelling the handler
        task.cancel()
        raise
