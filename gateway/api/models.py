"""GET /v1/models: the base model and every adapter, as the OpenAI SDK lists them."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.api.deps import ServicesDep
from gateway.api.protocol import ModelCard, ModelList

router = APIRouter(tags=["openai"])


@router.get("/v1/models", response_model=ModelList)
async def list_models(services: ServicesDep) -> ModelList:
    base = services.settings.served_model_name
    cards = [ModelCard(id=base, created=services.adapters.created, root=services.base_model.name)]
    cards += [
        ModelCard(id=a.name, created=a.created, root=a.name, parent=base)
        for a in services.adapters.all()
    ]
    return ModelList(data=cards)
