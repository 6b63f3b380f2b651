"""Every error leaves the gateway as an OpenAI-shaped body with a machine code, and only
with a code that docs/api.md lists (tests/unit/api/test_error_table.py holds the two
together): every ``GatewayError`` code, including the two below for what the framework
refuses before any route runs."""

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


class RouteNotFound(errors.InvalidRequest):
    status_code = 404
    code = "not_found"


class MethodNotAllowed(errors.InvalidRequest):
    status_code = 405
    code = "method_not_allowed"


HTTP_ERRORS = {400: errors.InvalidRequest, 404: RouteNotFound, 405: MethodNotAllowed}
PARAM_CHARS = 80
# FastAPI answers 400 "There was an error parsing the body" for every body it cannot
# decode but malformed JSON; the cause says which.
UNREADABLE = {
    UnicodeDecodeError: "the request body is not valid UTF-8",
    RecursionError: "the request body is JSON nested too deeply to read",
    ValueError: "the request body holds an integer too long to read",  # over 4300 digits
}


def _param(loc: tuple) -> str | None:
    """The path of a refused field. An unknown key in it is the client's own text: cut
    short and escaped, so it neither floods the error nor breaks its JSON encoding."""
    path = ".".join(str(part) for part in loc if part != "body")
    return path.encode("utf-8", "backslashreplace").decode()[:PARAM_CHARS] or None


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
    loc = tuple(first.get("loc", ()))
    param = _param(loc)
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    if first.get("type") == "extra_forbidden":
        from gateway.api.protocol import LEGACY_FIELDS

        hint = LEGACY_FIELDS.get(str(loc[-1])) if loc else None
        message = f"unknown parameter {param!r}"
        return (f"{message}: {hint}" if hint else message), param
    message = first.get("msg", "invalid value")
    if first.get("type") == "value_error":  # ours: pydantic's "Value error, " adds nothing
        message = str(first["ctx"]["error"])
    return f"{param or 'body'}: {message}", param


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
        cause, kind = exc.__cause__, HTTP_ERRORS.get(exc.status_code)
        if isinstance(cause, errors.GatewayError):  # ours while FastAPI read the body: 413
            refused(request, cause)
            return error_response(cause)
        if kind is None:  # no undocumented code leaves the gateway: an operator looks
            return error_response(
                errors.traced(errors.GatewayError, f"unexpected HTTP {exc.status_code}", log, exc)
            )
        error = kind(UNREADABLE.get(type(cause), str(exc.detail)))
        refused(request, error)  # e.g. a body FastAPI could not read: the route never ran
        # Starlette's own headers stay; ``Allow`` on a 405 (RFC 9110) must list every
        # method of the path, and Starlette names only the first route that matched it.
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return JSONResponse(error.to_body(), status_code=error.status_code, headers=headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return error_response(errors.traced(errors.GatewayError, "internal error", log, exc))
