"""Server-sent events in the OpenAI chunk format.

The first delta is awaited before the response starts, so errors the engine
raises on admission (e.g. a schema its backend cannot enforce) still get a proper
4xx status. Later failures end the stream with an ``error`` event and no ``[DONE]``,
which the OpenAI SDK raises as an ``APIError``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

from gateway import errors
from gateway.service.types import StreamDelta


def _event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


async def sse_response(
    deltas: AsyncIterator[StreamDelta],
    *,
    completion_id: str,
    model: str,
    include_usage: bool,
    headers: dict[str, str],
) -> StreamingResponse:
    first = await anext(deltas)  # may raise a GatewayError -> normal error response
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None) -> str:
        return _event(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [
                    {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
                ],
            }
        )

    def events(current: StreamDelta) -> list[str]:
        out = [chunk({"content": current.text}, None)] if current.text else []
        if current.finish_reason is not None:
            out.append(chunk({}, current.finish_reason))
            if include_usage:
                usage = {
                    "prompt_tokens": current.num_prompt_tokens,
                    "completion_tokens": current.num_output_tokens,
                    "total_tokens": current.num_prompt_tokens + current.num_output_tokens,
                }
                out.append(_event({"id": completion_id, "object": "chat.completion.chunk",
                                   "created": created, "model": model, "choices": [],
                                   "usage": usage}))  # fmt: skip
            out.append("data: [DONE]\n\n")
        return out

    async def body() -> AsyncIterator[str]:
        # One write per engine step: the role, a delta, the finish, usage and [DONE] of
        # the same step go out together (a 1-token answer is one write, not five). The
        # service's generator is read to its end, so it closes its admission normally.
        head = [chunk({"role": "assistant", "content": ""}, None)]
        current: StreamDelta | None = first
        try:
            while current is not None:
                yield "".join([*head, *events(current)])
                head = []
                current = await anext(deltas, None)
        except errors.GatewayError as exc:
            yield _event(exc.to_body())

    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)
