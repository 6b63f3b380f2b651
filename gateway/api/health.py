"""GET /health (the process answers) and GET /ready (the engine can generate)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    services = getattr(request.app.state, "services", None)
    if services is not None and services.engine.is_ready:
        # which LoRA path and decode kernel serve (e.g. grouped, shipped-avx2 or torch-fallback)
        return JSONResponse({"status": "ready", "lora": services.lora_path})
    reason = getattr(request.app.state, "startup_error", None) or "engine starting"
    return JSONResponse({"status": "not_ready", "reason": reason}, status_code=503)
