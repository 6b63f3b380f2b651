"""Admin API (admin key only): adapters and tenants on a running gateway.

Routes stay thin: each calls one registry or tenant-directory operation and returns
what changed. Tenant keys are returned once, when issued, and stored only as hashes.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request

from gateway import errors
from gateway.api.admin_protocol import (
    CanaryChoice,
    OptionalVersion,
    RegisterAdapter,
    VersionChoice,
)
from gateway.api.deps import AdminKeyFirstRoute, ServicesDep
from gateway.api.protocol import ErrorResponse
from gateway.common.names import excerpt, require_name
from gateway.registry.store import check_name, parse_store_path
from gateway.tenancy import Tenant, TenantSettings, generate_key, hash_key
from gateway.tenancy.tenants import check_tenant_name, new_tenant_id

ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 503)}
log = logging.getLogger(__name__)
# What the console shows of a version's evaluation (validation split), when recorded.
EVALUATION_KEYS = ("items", "accuracy", "macro_f1", "schema_valid_rate", "ece", "brier", "auroc")
router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    responses=ERRORS,
    route_class=AdminKeyFirstRoute,
)


@router.get("/adapters")
async def list_adapters(services: ServicesDep) -> dict[str, Any]:
    residency = services.adapters.residency
    adapters = services.adapters.describe()
    for adapter in adapters:  # the numbers its training recorded, for the console
        for version in adapter["versions"]:
            folder = services.adapters.store.root / adapter["name"] / version["version"]
            version["evaluation"] = evaluation_summary(_manifest(folder))
    return {
        "adapters": adapters,
        "engine": {"loaded": residency.num_loaded, "capacity": residency.capacity,
                   "events": dict(residency.events)},
        "base_model": services.settings.served_model_name,
        "schemas": services.schemas.names,
    }  # fmt: skip


@router.post("/adapters")
async def register_adapter(body: RegisterAdapter, services: ServicesDep) -> dict[str, Any]:
    name, version = parse_store_path(body.path)
    _not_reserved(name, services)
    return await services.adapters.register(name, version)


@router.post("/adapters/upload")
async def upload_adapter(
    name: str, version: str, request: Request, services: ServicesDep
) -> dict[str, Any]:
    """Body: a tar (optionally gzipped) of one PEFT folder, up to ``max_adapter_bytes``."""
    check_name(name, "name")
    check_name(version, "version")
    _not_reserved(name, services)
    with tempfile.NamedTemporaryFile(prefix="gateway-upload-", suffix=".tar") as tmp:
        async for chunk in request.stream():
            tmp.write(chunk)
        tmp.flush()
        return await services.adapters.register_archive(name, version, Path(tmp.name))


@router.post("/adapters/{name}/promote")
async def promote(name: str, body: VersionChoice, services: ServicesDep) -> dict[str, Any]:
    return await services.adapters.promote(name, check_name(body.version, "version"))


@router.post("/adapters/{name}/rollback")
async def rollback(name: str, services: ServicesDep) -> dict[str, Any]:
    return await services.adapters.rollback(name)


@router.post("/adapters/{name}/canary")
async def start_canary(name: str, body: CanaryChoice, services: ServicesDep) -> dict[str, Any]:
    """A second version takes ``weight`` of the alias's requests until promote, rollback or
    DELETE ends it; X-Gateway-Adapter-Version says which version answered."""
    version = check_name(body.version, "version")
    return await services.adapters.set_canary(check_name(name, "name"), version, body.weight)


@router.delete("/adapters/{name}/canary")
async def end_canary(name: str, services: ServicesDep) -> dict[str, Any]:
    return await services.adapters.set_canary(check_name(name, "name"), None, 0.0)


@router.get("/adapters/{name}/history")
async def alias_history(name: str, services: ServicesDep) -> dict[str, Any]:
    """Every change of the alias with state_backend=postgres (who, when, from, to); with
    files, only the rollback stack."""
    check_name(name, "name")
    alias = services.adapters.state.aliases.get(name)
    if services.shared is None:
        if alias is None:
            raise errors.AdapterNotFound(f"the adapter {name!r} does not exist", param="name")
        return {"name": name, "rollback_stack": alias.history}
    return {"name": name, "events": await services.shared.history(name)}


@router.get("/state")
async def state(services: ServicesDep) -> dict[str, Any]:
    """Where this replica's state lives and, when shared, whether it is in step."""
    if services.shared is None:
        return {"backend": "files", "registry": str(services.settings.registry_path)}
    return services.shared.describe()


@router.post("/adapters/{name}/load")
async def load(name: str, services: ServicesDep, body: OptionalVersion | None = None) -> dict:
    return await services.adapters.load(check_name(name, "name"), _version(body))


@router.post("/adapters/{name}/unload")
async def unload(name: str, services: ServicesDep, body: OptionalVersion | None = None) -> dict:
    return await services.adapters.unload(check_name(name, "name"), _version(body))


@router.delete("/adapters/{name}")
async def delete_adapter(name: str, services: ServicesDep) -> dict[str, Any]:
    """The adapter and all its versions, the current one too (409 while any is in use)."""
    return await services.adapters.delete_adapter(check_name(name, "name"))


@router.delete("/adapters/{name}/{version}")
async def delete_version(name: str, version: str, services: ServicesDep) -> dict[str, Any]:
    return await services.adapters.delete(check_name(name, "name"), check_name(version, "version"))


@router.get("/tenants")
async def list_tenants(services: ServicesDep) -> dict[str, Any]:
    return {"tenants": [_public(t) for t in services.tenants.all()]}


@router.put("/tenants/{name}")
async def put_tenant(name: str, body: TenantSettings, services: ServicesDep) -> dict[str, Any]:
    """Create (with a new key, returned once, and a new id) or update a tenant's settings."""
    require_name(name, "name")
    _check_escalation_labels(body, services)
    existing = services.tenants.get(name)
    if existing is None:
        check_tenant_name(name)
    key = None if existing else generate_key()
    hashes = existing.key_hashes if existing else [hash_key(key or "")]
    tenant = _tenant(name, hashes, body, existing.id if existing else new_tenant_id())
    services.tenants.upsert(tenant)
    result: dict[str, Any] = {"tenant": _public(tenant), "created": existing is None}
    if key is not None:
        result["api_key"] = key
    return result


@router.post("/tenants/{name}/keys")
async def issue_key(name: str, services: ServicesDep) -> dict[str, Any]:
    require_name(name, "name")
    if services.tenants.get(name) is None:
        raise errors.InvalidRequest(f"no tenant {name!r}", param="name")
    return {"tenant": name, "api_key": services.tenants.issue_key(name)}


@router.delete("/tenants/{name}")
async def delete_tenant(name: str, request: Request, services: ServicesDep) -> dict[str, Any]:
    """The tenant, its keys, and (with fine-tuning on) its files, jobs and the versions its
    jobs made that no alias serves: a later tenant of the same name starts empty."""
    require_name(name, "name")
    tenant = services.tenants.get(name)
    result: dict[str, Any] = {"tenant": name, "deleted": services.tenants.delete(name)}
    finetune = getattr(request.app.state, "finetune", None)
    if tenant is not None and finetune is not None:
        result["removed"] = await finetune.forget(tenant, services.adapters)
    return result


def evaluation_summary(manifest: dict[str, Any]) -> dict[str, float] | None:
    """The headline numbers of a manifest: its validation split's scores and, when
    calibrated, the temperature; None for a version trained without evaluation."""
    evaluation = manifest.get("evaluation")
    split = evaluation.get("validation") if isinstance(evaluation, dict) else None
    split = split if isinstance(split, dict) else {}
    calibration = manifest.get("calibration")
    found = {
        **{key: split.get(key) for key in EVALUATION_KEYS},
        "temperature": calibration.get("temperature") if isinstance(calibration, dict) else None,
    }
    numbers = {k: v for k, v in found.items() if type(v) in (int, float)}  # not bools
    return numbers or None


def _manifest(folder: Path) -> dict[str, Any]:
    """The manifest the store validated at registration; a file changed on disk since
    costs its numbers (logged), not the whole listing."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("admin: cannot read %s/manifest.json: %s", folder, exc)
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _version(body: OptionalVersion | None) -> str | None:
    """The version asked for, or None for the current one."""
    version = (body or OptionalVersion()).version
    return None if version is None else check_name(version, "version")


def _tenant(name: str, hashes: list[str], spec: TenantSettings, tenant_id: str | None) -> Tenant:
    try:
        return Tenant(name=name, key_hashes=hashes, id=tenant_id, **spec.model_dump())
    except ValueError as exc:  # pydantic's ValidationError: a bad name or default adapter
        raise errors.InvalidRequest(f"invalid tenant: {exc}") from exc


def _check_escalation_labels(spec: TenantSettings, services: Any) -> None:
    """An override's labels must be labels of the adapter it names, when that adapter is
    known (a label outside the set could never match, so it is surely a mistake)."""
    for key, override in spec.escalation.items():
        if override.labels is None or key == "*":
            continue
        if key == services.settings.served_model_name:
            labels = services.classify.default_labels
        elif key in services.adapters.names():
            labels = services.adapters.current(key).labels or ()
        else:
            continue
        unknown = sorted(set(override.labels) - set(labels))
        if unknown:
            raise errors.InvalidRequest(
                f"escalation {key!r}: {excerpt(', '.join(unknown))} not among its labels",
                param=f"escalation.{key}.labels",
            )


def _public(tenant: Tenant) -> dict[str, Any]:
    """Everything but the key hashes (only how many keys there are)."""
    body = tenant.model_dump(exclude={"key_hashes"})
    body["num_keys"] = len(tenant.key_hashes)
    return body


def _not_reserved(name: str, services: Any) -> None:
    if name == services.settings.served_model_name:
        raise errors.InvalidRequest(f"{name!r} is the base model's name", param="path")
