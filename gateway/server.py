"""Wiring: settings -> model -> engine -> services -> FastAPI app.

The engine starts in the background so ``/health`` answers at once and ``/ready``
tells the truth while the model loads. If start-up fails, the reason is kept for
``/ready`` and the process is asked to stop, so an orchestrator restarts it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from gateway import errors
from gateway.api import (
    admin,
    admin_console,
    chat,
    classify,
    console,
    health,
    metrics,
    models,
    vllm_admin,
)
from gateway.api import errors as api_errors
from gateway.api import files as files_api
from gateway.api import fine_tuning as fine_tuning_api
from gateway.config import Settings
from gateway.engine.factory import default_engine
from gateway.engine.types import EngineClient
from gateway.finetune.service import FineTuning
from gateway.models import ModelInfo
from gateway.service import Services

log = logging.getLogger("gateway")


class BodyLimit:
    """Refuses request bodies over ``max_bytes`` before they are buffered (413).

    A declared ``Content-Length`` is refused here, before any route; a chunked body is
    found too large while it is read, and the reader gets ``BodyTooLarge``: a route
    reading a stream raises it on, and FastAPI's own body parsing (which says 400 for any
    body it cannot read) keeps it as the cause, which ``api.errors`` answers with.
    """

    def __init__(self, app: Any, max_bytes: int, upload_max_bytes: int, file_max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes
        # adapter archives and training files are larger than requests
        self.limits = {UPLOAD_PATH: upload_max_bytes, FILES_PATH: file_max_bytes}

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], self.max_bytes)
        too_large = errors.BodyTooLarge(f"the request body is over {limit} bytes")
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(send, too_large)
            return
        seen = 0

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise too_large
            return message

        await self.app(scope, limited_receive, send)

    async def _reject(self, send: Callable, error: errors.BodyTooLarge) -> None:
        payload = json.dumps(error.to_body()).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


UPLOAD_PATH = "/admin/adapters/upload"
FILES_PATH = "/v1/files"
MULTIPART_BYTES = 64 * 1024  # room for the form's own parts around an uploaded file


async def start_services(
    app: FastAPI,
    settings: Settings,
    factory: Callable[[Settings], tuple[EngineClient, ModelInfo]],
    exit_on_failure: bool,
) -> None:
    try:
        engine, base = await asyncio.to_thread(factory, settings)
        services = Services.build(settings, engine, base)
        if services.shared is None:
            services.adapters.recover()  # drop (and log) persisted versions that fail now
            for name, version in settings.adapters.items():
                services.adapters.ensure(name, version)  # validated before the engine starts
        app.state.engine = engine
        await engine.start()  # type: ignore[attr-defined]
        if services.shared is not None:
            app.state.shared = services.shared
            await services.shared.start()  # adopt (and seed) the shared state, then follow
        services.describe_base(engine.quantization or {"method": "none"}, engine.lora_path)
        for name in services.adapters.names()[: settings.max_cpu_loras]:
            await services.adapters.load(name)  # warm the current versions
        app.state.services = services
        if settings.finetune_dir is not None:  # after the registry: jobs register into it
            finetune = FineTuning.build(
                settings, settings.finetune_dir, base, services.adapters, services.metrics
            )
            finetune.start()
            app.state.finetune = finetune
            services.chat.version_owner = finetune.jobs.version_owner  # pinned versions
            services.chat.admission.load_listener = finetune.runner.serving  # None: off
        log.info("gateway ready: base=%s adapters=%s", base.name, services.adapters.names())
        print(ready_banner(settings), flush=True)
    except Exception as exc:
        app.state.startup_error = f"{type(exc).__name__}: {exc}"
        log.exception("start-up failed")
        if exit_on_failure:
            os.kill(os.getpid(), signal.SIGTERM)


ENGINE_POLL_S = 1.0


async def watch_engine(
    app: FastAPI, settings: Settings, exit_on_failure: bool, poll_s: float = ENGINE_POLL_S
) -> None:
    """Once the engine has been ready, notice when it dies (its process killed, OOM).

    From then on /ready says 503 with the reason and requests get 503
    ``engine_unavailable`` (the engine client refuses them); after
    ``engine_failure_exit_s`` the process stops so an orchestrator restarts it. A dead
    vLLM engine cannot be restarted in place, and a half-alive gateway is worse than none.
    """
    while True:
        await asyncio.sleep(poll_s)
        services = getattr(app.state, "services", None)
        if services is None or services.engine.is_ready:
            continue
        app.state.startup_error = "the inference engine has stopped"
        app.state.engine_died = True
        log.error(
            "the inference engine has stopped; exiting in %.0f s", settings.engine_failure_exit_s
        )
        if exit_on_failure:
            await asyncio.sleep(settings.engine_failure_exit_s)
            os.kill(os.getpid(), signal.SIGTERM)
        return


def ready_banner(settings: Settings) -> str:
    url = f"http://{settings.host}:{settings.port}"
    adapter = next(iter(settings.adapters), None)
    body = {"text": "I was charged twice for my subscription this month"}
    if adapter:
        body["adapter"] = adapter
    return (
        f"\nGateway ready on {url} (OpenAI base URL: {url}/v1)\n"
        f"Try:\n  curl -s {url}/v1/classify -H 'Content-Type: application/json' "
        f"-d '{json.dumps(body)}'\n"
    )


def create_app(
    settings: Settings | None = None,
    engine_factory: Callable[[Settings], tuple[EngineClient, ModelInfo]] = default_engine,
    *,
    exit_on_failure: bool = True,
    engine_poll_s: float = ENGINE_POLL_S,
) -> FastAPI:
    """``engine_poll_s``: how often the watchdog asks the engine if it is alive (tests
    shorten it rather than wait a second of wall clock)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.startup_error = None
        app.state.engine_died = False
        starting = asyncio.create_task(
            start_services(app, settings, engine_factory, exit_on_failure)
        )
        watchdog = asyncio.create_task(watch_engine(app, settings, exit_on_failure, engine_poll_s))
        yield
        starting.cancel()
        watchdog.cancel()
        finetune = getattr(app.state, "finetune", None)
        if finetune is not None:  # its worker is stopped and its job fails as interrupted
            await finetune.stop()
        shared = getattr(app.state, "shared", None)
        if shared is not None:
            await shared.stop()
        services = getattr(app.state, "services", None)
        if services is not None and hasattr(services.limiter, "aclose"):
            await services.limiter.aclose()  # Redis: lets pending releases finish
        engine = getattr(app.state, "engine", None)
        if engine is not None and hasattr(engine, "shutdown"):
            engine.shutdown()

    app = FastAPI(
        title="lora-gateway",
        version="0.1.0",
        description="Structured JSON from one base model and many LoRA adapters.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    api_errors.install(app)
    routers = (
        health.router,
        metrics.router,
        models.router,
        chat.router,
        classify.router,
        admin.router,
        files_api.router,
        fine_tuning_api.router,
        admin_console.router,
        vllm_admin.router,
        console.router,
    )
    for router in routers:
        app.include_router(router)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        upload_max_bytes=settings.max_adapter_bytes,
        file_max_bytes=settings.finetune_max_file_bytes + MULTIPART_BYTES,
    )
    return app
