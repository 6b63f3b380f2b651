"""FastAPI dependencies, as named ``Annotated`` aliases, and the route class that checks
the key before the body is read."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request, Response
from fastapi.routing import APIRoute

from gateway import errors
from gateway.api.refusals import CONSOLE_TENANT, refusals_recorded, refused
from gateway.common.names import excerpt
from gateway.service import Services
from gateway.tenancy import Tenant
from gateway.tenancy.keys import key_matches

_UNCHECKED = object()
TIMEOUT_HEADER = "X-Request-Timeout"
SECONDS = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9})?")  # plain decimal: no exponent, nan, inf


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
    """The caller's tenant, checked once per request (``KeyFirstRoute`` may have done it)."""
    checked = getattr(request.state, "tenant", _UNCHECKED)
    if checked is not _UNCHECKED:
        return checked  # type: ignore[return-value]
    tenant = None
    if services.is_open:
        request.state.tenant_name = "open"  # local development: loopback only (start-up)
    else:
        with refusals_recorded(request):
            tenant = services.tenants.authenticate(bearer_key(request))
        request.state.tenant_name = tenant.name  # for counting requests refused later
    request.state.tenant = tenant
    return tenant


def parse_timeout(value: str) -> float:
    """Seconds from the ``X-Request-Timeout`` header; a value the gateway would have to
    guess at (empty, negative, zero, an exponent, ``inf``) is refused, not ignored."""
    text = value.strip()
    if SECONDS.fullmatch(text) is None or float(text) == 0:
        raise errors.InvalidRequest(
            f"{TIMEOUT_HEADER} must be a number of seconds above 0, such as 2.5; got "
            f"{excerpt(value, 20)}",
            param=TIMEOUT_HEADER,
        )
    return float(text)


def _timeout(
    request: Request,
    x_request_timeout: Annotated[
        str | None,
        Header(
            description="Seconds this request may take, waiting and generating together; "
            "more than the server's request_timeout_s counts as that. Past it: 504 "
            "deadline_exceeded, and the engine work is stopped."
        ),
    ] = None,
) -> float | None:
    if x_request_timeout is None:
        return None
    with refusals_recorded(request):
        return parse_timeout(x_request_timeout)


def _admin(request: Request, services: ServicesDep) -> None:
    if services.admin_key_hash is None:
        raise errors.Unauthorized("the admin API is disabled; set GATEWAY_ADMIN_KEY to enable it")
    key = bearer_key(request)
    if key is None or not key_matches(key, services.admin_key_hash):
        raise errors.Unauthorized("invalid admin key")
    request.state.tenant_name = CONSOLE_TENANT  # counts the playground's refusals


def _checked_first(check: Callable[[Request, Services], object]) -> type[APIRoute]:
    """A route class that runs ``check`` before FastAPI reads and parses the body (it
    does so before solving any dependency): a keyless client with a malformed or huge
    body learns 401, and the gateway buffers nothing for it."""

    class CheckedFirstRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
            handler = super().get_route_handler()

            async def checked_first(request: Request) -> Response:
                check(request, _services(request))
                return await handler(request)

            return checked_first

    return CheckedFirstRoute


TenantDep = Annotated[Tenant | None, Depends(_tenant)]
TimeoutDep = Annotated[float | None, Depends(_timeout)]  # the client's deadline, in seconds
KeyFirstRoute = _checked_first(_tenant)  # /v1 routes: the tenant's key
AdminKeyFirstRoute = _checked_first(_admin)  # /admin routes: the admin key
