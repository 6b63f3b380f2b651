"""POST /v1/classify: the intent-classification endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.api.chat import adapter_headers
from gateway.api.deps import KeyFirstRoute, ServicesDep, TenantDep, TimeoutDep
from gateway.api.disconnect import cancel_on_disconnect
from gateway.api.protocol import (
    ClassifyRequest,
    ClassifyResponse,
    ErrorResponse,
    Escalation,
    LabelProbability,
    Usage,
)
from gateway.api.refusals import refusals_recorded
from gateway.service.classify import Classification

router = APIRouter(tags=["classify"], route_class=KeyFirstRoute)
ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 413, 429, 502, 503, 504)}


@router.post("/v1/classify", response_model=ClassifyResponse, responses=ERRORS)
async def classify(
    body: ClassifyRequest,
    request: Request,
    services: ServicesDep,
    tenant: TenantDep,
    timeout: TimeoutDep,
) -> JSONResponse:
    with refusals_recorded(request):
        prepared = services.classify.prepare(body.text, body.adapter, tenant, body.top_k, timeout)
    found = await cancel_on_disconnect(request, services.classify.run(prepared))
    adapter = found.adapter or services.settings.served_model_name
    response = ClassifyResponse(
        **found.as_dict(),
        top_k=None if found.top_k is None else [
            LabelProbability(intent=label, probability=p) for label, p in found.top_k
        ],
        escalation=Escalation(
            reason=found.escalation_reason, threshold=found.escalation.threshold
        ),
        adapter=adapter,
        usage=Usage.of(found.num_prompt_tokens, found.num_output_tokens),
    )  # fmt: skip
    headers = adapter_headers(found.adapter, found.version, services)
    headers["X-Gateway-Attempts"] = str(found.attempts)
    headers["X-Gateway-Confidence"] = confidence_header(found)
    headers["X-Gateway-Input-Corrections"] = str(found.input_corrections)
    return JSONResponse(response.model_dump(), headers=headers)


def confidence_header(found: Classification) -> str:
    """``calibrated; temperature=1.42``, or ``uncalibrated`` (no fitted temperature)."""
    if found.temperature is None:
        return "uncalibrated"
    return f"calibrated; temperature={found.temperature:.4g}"
