"""FastAPI dependencies, as named ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway import errors
from gateway.api.refusals import refusals_recorded, refused
from gateway.service import Services
from gateway.tenancy import Tenant
from gateway.tenancy.keys import key_matches


def _services(request: Request) -> Services:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None or not services.engine.is_ready:
        exc = errors.EngineUnavailable("the engine is starting or has stopped; retry shortly")
        refused(request, exc)
        raise exc
    return services


ServicesDep = Annotated[Services, Depends(_services)]


def bearer_key(request: Request) -> str | None:
    """The key from ``Authorization: Bearer <key>``; never logged, never echoed."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


def _tenant(request: Request, services: ServicesDep) -> Tenant | None:
    if services.is_open:
        request.state.tenant_name = "open"
        return None  # local development: start-up allows this on loopback only
    with refusals_recorded(request):
        tenant = services.tenants.authenticate(bearer_key(request))
    request.state.tenant_name = tenant.name  # for counting requests refused later
    return tenant


def _admin(request: Request, services: ServicesDep) -> None:
    if services.admin_key_hash is None:
        raise errors.Unauthorized("the admin API is disabled; set GATEWAY_ADMIN_KEY to enable it")
    key = bearer_key(request)
    if key is None or not key_matches(key, services.admin_key_hash):
        raise errors.Unauthorized("invalid admin key")


TenantDep = Annotated[Tenant | None, Depends(_tenant)]
AdminDep = Depends(_admin)
