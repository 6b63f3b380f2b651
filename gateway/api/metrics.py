"""GET /metrics: Prometheus text format. No key, like /health: scrapers sit inside the
deployment, and no label carries a key or a prompt."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.observability.metrics import NOT_READY

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition format",
        }
    },
)
async def metrics(request: Request) -> Response:
    services = getattr(request.app.state, "services", None)
    if services is None:  # still starting (or failed): say so, so alerts can fire
        return Response(NOT_READY, media_type=CONTENT_TYPE_LATEST)
    services.refresh_gauges()
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
