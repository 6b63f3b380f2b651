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
        cards.extend(own_versions(services, tenant, name, base))
    return ModelList(data=cards)


def own_versions(services: ServicesDep, tenant: TenantDep, name: str, base: str) -> list[ModelCard]:
    """The tenant's fine-tuned versions of ``name`` that are not current, as OpenAI lists
    fine-tuned models: ``name@version``, owned by the tenant (only it may pin them)."""
    owner_of = services.chat.version_owner
    if owner_of is None or tenant is None:
        return []
    alias = services.adapters.state.aliases[name]
    return [
        ModelCard(
            id=f"{name}@{version}", created=found.created, owned_by=tenant.name, root=name,
            parent=base, calibrated=found.calibrated,
        )
        for version in alias.versions
        if version != alias.current and owner_of(name, version) == tenant.owner_id
        for found in [services.adapters.version(name, version)]
    ]  # fmt: skip
