"""GET /v1/models: the base model and every adapter, as the OpenAI SDK lists them."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.api.deps import ServicesDep, TenantDep
from gateway.api.protocol import ErrorResponse, ModelCard, ModelList

router = APIRouter(tags=["openai"])
ERRORS = {code: {"model": ErrorResponse} for code in (401, 503)}


@router.get("/v1/models", response_model=ModelList, responses=ERRORS)
async def list_models(services: ServicesDep, tenant: TenantDep) -> ModelList:
    """A tenant sees the base model and the adapters it may use, nothing else."""
    base = services.settings.served_model_name
    profile = services.classify.base_profile  # a merged model classifies as its adapter did
    cards = [
        ModelCard(
            id=base, created=services.adapters.created, root=services.base_model.name,
            quantization=services.base_quantization,
            calibrated=bool(profile and profile.calibrated),
        )
    ]  # fmt: skip
    for name in services.adapters.names():
        if tenant is not None and not tenant.may_use(name):
            continue
        found = services.adapters.current(name)
        cards.append(
            ModelCard(
                id=name, created=found.created, root=name, parent=base,
                calibrated=found.calibrated,
            )
        )  # fmt: skip
    return ModelList(data=cards)
