"""POST /v1/chat/completions: parse, hand to the chat service, pick JSON or SSE."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gateway.api.deps import KeyFirstRoute, ServicesDep, TenantDep, TimeoutDep
from gateway.api.disconnect import cancel_on_disconnect
from gateway.api.protocol import (
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    ErrorResponse,
    ResponseMessage,
    Usage,
)
from gateway.api.refusals import refusals_recorded
from gateway.api.streaming import sse_response
from gateway.service.types import ChatTask

router = APIRouter(tags=["openai"], route_class=KeyFirstRoute)
ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 413, 429, 502, 503, 504)}


def adapter_headers(name: str | None, version: str | None, services: ServicesDep) -> dict:
    """Which adapter and version produced the answer (pinned when the request was admitted)."""
    headers = {"X-Gateway-Adapter": name or services.settings.served_model_name}
    if version is not None:
        headers["X-Gateway-Adapter-Version"] = version
    return headers


def to_task(body: ChatCompletionRequest, timeout_s: float | None) -> ChatTask:
    messages = [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
        for m in body.messages
    ]
    return ChatTask(
        messages=messages,
        model=body.model,
        response_format=body.response_format,
        max_tokens=body.token_limit(),
        min_tokens=body.min_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=body.stop_tuple(),
        timeout_s=timeout_s,
    )


@router.post("/v1/chat/completions", response_model=ChatCompletion, responses=ERRORS)
async def chat_completions(
    body: ChatCompletionRequest,
    request: Request,
    services: ServicesDep,
    tenant: TenantDep,
    timeout: TimeoutDep,
) -> Response:
    with refusals_recorded(request):
        prepared = services.chat.prepare(to_task(body, timeout), tenant)
    headers = adapter_headers(prepared.adapter_name, prepared.adapter_version, services)
    if prepared.constraint is not None and prepared.constraint.name:
        # Names are checked plain ASCII; percent-encoding keeps any other value (never
        # expected) from reaching the header bytes, where it would break the response.
        name = prepared.constraint.name
        headers["X-Gateway-Schema"] = quote(name, safe="", errors="surrogatepass")
        headers["X-Gateway-Schema-Source"] = prepared.constraint.origin
    if body.stream:
        return await sse_response(
            services.chat.stream(prepared),
            completion_id=prepared.params.request_id,
            model=body.model,
            include_usage=body.include_usage(),
            headers=headers,
        )
    result = await cancel_on_disconnect(request, services.chat.complete(prepared))
    headers["X-Gateway-Attempts"] = str(result.attempts)
    completion = ChatCompletion(
        id=prepared.params.request_id,
        model=body.model,
        choices=[
            Choice(message=ResponseMessage(content=result.text), finish_reason=result.finish_reason)
        ],
        usage=Usage.of(result.num_prompt_tokens, result.num_output_tokens),
    )
    return JSONResponse(completion.model_dump(), headers=headers)
