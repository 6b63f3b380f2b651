"""vLLM's adapter endpoints, so controllers written for vLLM can drive the gateway.

vLLM's production-stack and AIBrix load and unload adapters on each server through
``POST /v1/load_lora_adapter`` (``{"lora_name", "lora_path"}``) and
``POST /v1/unload_lora_adapter`` (``{"lora_name"}``), answered with a plain-text success
line. Here they take the admin key (vLLM leaves them open unless
``VLLM_ALLOW_RUNTIME_LORA_UPDATING`` and an API key are set) and map onto the registry:

- load: ``lora_path`` must be a version folder inside the adapter store (``name/version``,
  relative or absolute; nothing outside it is read), ``lora_name`` its adapter name (or
  ``name@version``). The version is registered if it is not yet (a new name makes it
  current, as an admin registration does) and loaded into the engine. Loading again is
  not an error: controllers reconcile by repeating it.
- unload: the version leaves the engine's memory. Unlike vLLM it stays registered, so a
  later request for it loads it again: a controller's unload frees the slot, it does not
  take an adapter away from tenants (the admin API's delete does that).

Errors are the gateway's typed errors, in OpenAI's shape, as vLLM's are.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict

from gateway import errors
from gateway.api.deps import AdminKeyFirstRoute, ServicesDep
from gateway.api.protocol import ErrorResponse
from gateway.common.names import excerpt
from gateway.registry.store import check_name, parse_store_path
from gateway.service import Services

router = APIRouter(prefix="/v1", tags=["admin"], route_class=AdminKeyFirstRoute)
ERRORS: dict[int | str, dict] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 503)
}
PLAIN = {200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **ERRORS}


class LoadLoraAdapter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lora_name: str
    lora_path: str
    load_inplace: bool = False  # vLLM's flag; a version here is immutable, so it changes nothing


class UnloadLoraAdapter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lora_name: str
    lora_int_id: int | None = None  # vLLM's; names are what the gateway goes by


@router.post("/load_lora_adapter", response_class=Response, responses=PLAIN)
async def load_lora_adapter(body: LoadLoraAdapter, services: ServicesDep) -> Response:
    name, version = store_version(body.lora_path, services)
    asked, _, asked_version = body.lora_name.partition("@")
    if asked != name or asked_version not in ("", version):
        raise errors.InvalidRequest(
            f"lora_name {excerpt(body.lora_name)} does not name the folder at lora_path "
            f"({name}/{version}): use {name!r} or {name + '@' + version!r}",
            param="lora_name",
        )
    if name == services.settings.served_model_name:
        raise errors.InvalidRequest(f"{name!r} is the base model's name", param="lora_name")
    if not services.adapters.is_registered(name, version):
        await services.adapters.register(name, version)
    await services.adapters.load(name, version)
    return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' added successfully.")


@router.post("/unload_lora_adapter", response_class=Response, responses=PLAIN)
async def unload_lora_adapter(body: UnloadLoraAdapter, services: ServicesDep) -> Response:
    name, _, version = body.lora_name.partition("@")
    check_name(name, "name")
    await services.adapters.unload(name, check_name(version, "version") if version else None)
    return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' removed successfully.")


def store_version(lora_path: str, services: Services) -> tuple[str, str]:
    """(name, version) of a folder inside the adapter store, given as ``name/version`` or
    as an absolute path there; anything that resolves elsewhere is refused."""
    root = services.adapters.store.root
    path = Path(lora_path)
    if path.is_absolute():
        try:
            relative = path.relative_to(root)
        except ValueError:
            raise errors.AdapterInvalid(
                f"lora_path {excerpt(lora_path)} is not inside the adapter store {root}",
                param="lora_path",
            ) from None
        lora_path = relative.as_posix()
    try:
        return parse_store_path(lora_path)
    except errors.AdapterInvalid as exc:
        raise errors.AdapterInvalid(exc.message, param="lora_path") from exc
