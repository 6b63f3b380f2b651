"""Admin routes the console needs beyond managing adapters and tenants (admin key only).

``GET /admin/metrics``: the ``/metrics`` page for the console's live view. ``/metrics``
itself takes the scraper's own key, which the console does not hold; the admin key already
sees every tenant and adapter, so reading the same page with it reveals nothing new, and the
scraper's key still opens nothing else.

``POST /admin/playground/chat/completions``: a chat completion made by the operator, on any
adapter and under no tenant's limits, so a schema can be tried against an adapter before
a tenant tries it. It runs the public route's own code as a tenant named ``console``
(every adapter, no limits), so its requests show in the metrics under that name, those
refused before admission (a bad schema, a malformed body) too.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.api.chat import chat_completions
from gateway.api.deps import AdminKeyFirstRoute, ServicesDep, TimeoutDep
from gateway.api.protocol import ChatCompletion, ChatCompletionRequest, ErrorResponse
from gateway.api.refusals import CONSOLE_TENANT, PLAYGROUND
from gateway.service import Services
from gateway.tenancy import Tenant

router = APIRouter(prefix="/admin", tags=["admin"], route_class=AdminKeyFirstRoute)
ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 429, 502, 503, 504)}


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **ERRORS},
)
async def metrics_page(services: ServicesDep) -> Response:
    services.refresh_gauges()
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.post(PLAYGROUND.removeprefix("/admin"), response_model=ChatCompletion, responses=ERRORS)
async def playground_chat(
    body: ChatCompletionRequest, request: Request, services: ServicesDep, timeout: TimeoutDep
) -> Response:
    return await chat_completions(body, request, services, console_tenant(services), timeout)


def console_tenant(services: Services) -> Tenant:
    """The operator as a tenant: every adapter, no limits. It is in no directory, so no
    key opens it; its hash is the admin key's, which the directory refuses anyway."""
    return Tenant(
        name=CONSOLE_TENANT,
        key_hashes=[services.admin_key_hash or ""],
        allowed_adapters=["*"],
    )
