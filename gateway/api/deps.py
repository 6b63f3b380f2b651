"""FastAPI dependencies, as named ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway import errors
from gateway.service import Services


def _services(request: Request) -> Services:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None or not services.engine.is_ready:
        raise errors.EngineUnavailable("the engine is starting or has stopped; retry shortly")
    return services


ServicesDep = Annotated[Services, Depends(_services)]
