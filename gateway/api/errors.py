"""Every error leaves the gateway as an OpenAI-shaped body with a machine code."""

from __future__ import annotations

import logging
import math
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from gateway import errors
from gateway.api.refusals import refused

log = logging.getLogger(__name__)


def error_response(exc: errors.GatewayError) -> JSONResponse:
    headers = None
    if isinstance(exc, errors.RateLimited | errors.Overloaded):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    elif exc.status_code == 503:
        headers = {"Retry-After": "5"}
    elif isinstance(exc, errors.Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=headers)


def _describe(exc: RequestValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    if first.get("type") == "extra_forbidden":
        from gateway.api.protocol import LEGACY_FIELDS

        hint = LEGACY_FIELDS.get(loc[-1]) if loc else None
        message = f"unknown parameter {param!r}"
        return (f"{message}: {hint}" if hint else message), param
    return f"{param or 'body'}: {first.get('msg', 'invalid value')}", param


def allowed_methods(request: Request) -> list[str]:
    """Methods of the most specific route templates matching the path: for
    ``/admin/adapters/x/promote`` that is ``.../{name}/promote``, not ``{name}/{version}``."""
    best, methods = -1, set()
    for route in request.app.routes:
        regex, path = getattr(route, "path_regex", None), getattr(route, "path", "")
        if regex is None or not regex.match(request.url.path):
            continue
        literal = len(re.sub(r"{[^}]*}", "", path))
        if literal > best:
            best, methods = literal, set()
        if literal == best:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.GatewayError)
    async def _gateway(_: Request, exc: errors.GatewayError) -> JSONResponse:
        return error_response(exc)  # counted where it was raised (see ``api.refusals``)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _describe(exc)
        error = errors.InvalidRequest(message, param=param)
        refused(request, error)  # raised before the route runs: never admitted
        return error_response(error)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        err = errors.InvalidRequest(str(exc.detail))
        body = err.to_body()
        body["error"]["code"] = {404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        # Starlette's own headers stay; ``Allow`` on a 405 (RFC 9110) must list every
        # method of the path, and Starlette names only the first route that matched it.
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return JSONResponse(body, status_code=exc.status_code, headers=headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return error_response(errors.traced(errors.GatewayError, "internal error", log, exc))
