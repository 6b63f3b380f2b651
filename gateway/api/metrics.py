"""GET /metrics: Prometheus text format, for the scraper only.

Its labels name every tenant and adapter with their traffic, so with tenant keys in play
it is not public: it takes the ``metrics_key`` (a key of its own, so the credential kept
in Prometheus' config opens nothing else, and no tenant key or admin key opens this).
Open only in ``auth_mode: none`` without a metrics key, which start-up allows on
loopback only. The not-ready page is behind the same check: what a page says is never
decided by who asks.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway import errors
from gateway.api.deps import bearer_key
from gateway.api.protocol import ErrorResponse
from gateway.config import Settings
from gateway.observability.metrics import NOT_READY
from gateway.tenancy.keys import hash_key, key_matches

router = APIRouter(tags=["health"])
KEY_HINT = (
    "set GATEWAY_METRICS_KEY on the gateway and give Prometheus the same key "
    "(authorization: credentials_file); see docs/metrics-and-deploy.md"
)


def _scraper(request: Request) -> None:
    settings: Settings = request.app.state.settings
    if settings.metrics_key is None:
        if settings.auth_mode == "none":
            return
        raise errors.Unauthorized(
            "/metrics is closed: auth_mode=tenants needs a metrics_key to read it",
            hint=KEY_HINT,
        )
    key = bearer_key(request)
    expected = hash_key(settings.metrics_key.get_secret_value())
    if key is None or not key_matches(key, expected):  # constant time, like the admin key
        raise errors.Unauthorized("invalid metrics key", hint=KEY_HINT)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition format",
        },
        401: {"model": ErrorResponse, "description": "No metrics key, or a wrong one"},
    },
)
async def metrics(request: Request, _: Annotated[None, Depends(_scraper)]) -> Response:
    services = getattr(request.app.state, "services", None)
    # the listeners' own series (open and dropped connections), from `gateway serve`
    listeners = getattr(request.app.state, "connection_metrics", None)
    extra = generate_latest(listeners) if listeners is not None else b""
    if services is None:  # still starting (or failed): say so, so alerts can fire
        return Response(NOT_READY + extra, media_type=CONTENT_TYPE_LATEST)
    services.refresh_gauges()
    page = generate_latest(services.metrics.registry) + extra
    return Response(page, media_type=CONTENT_TYPE_LATEST)
