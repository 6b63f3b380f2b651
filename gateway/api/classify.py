"""POST /v1/classify: the intent-classification endpoint."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from gateway.api.deps import ServicesDep
from gateway.api.protocol import ClassifyRequest, ClassifyResponse, ErrorResponse, Usage

router = APIRouter(tags=["classify"])
ERRORS = {code: {"model": ErrorResponse} for code in (400, 404, 413, 502, 503)}


@router.post("/v1/classify", response_model=ClassifyResponse, responses=ERRORS)
async def classify(body: ClassifyRequest, services: ServicesDep) -> JSONResponse:
    found = await services.classify.classify(body.text, body.adapter)
    adapter = found.adapter or services.settings.served_model_name
    response = ClassifyResponse(
        **found.as_dict(),
        adapter=adapter,
        usage=Usage.of(found.num_prompt_tokens, found.num_output_tokens),
    )
    headers = {"X-Gateway-Adapter": adapter, "X-Gateway-Attempts": str(found.attempts)}
    return JSONResponse(response.model_dump(), headers=headers)
