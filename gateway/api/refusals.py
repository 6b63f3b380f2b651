"""Counting the requests the HTTP layer refuses before they reach admission.

Each request's outcome is counted once, by whoever ends it: admission counts every
request it sees (turned away at the door, or finished however it ends); this module
counts what ends earlier (no or a bad key, a malformed body, a forbidden adapter, an
engine that is not ready). The console's playground counts as a chat request of the
tenant ``console`` once the admin key is checked (a bad admin key is not counted, as on
every admin route). The code that refuses, not a mark on the exception, decides:
checks before admission run inside ``refusals_recorded``; admission is never inside it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import Request

from gateway import errors
from gateway.service.recording import record_refusal

CONSOLE_TENANT = "console"  # the operator's playground requests count under this name
PLAYGROUND = "/admin/playground/chat/completions"
ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/classify": "classify", PLAYGROUND: "chat"}


def refused(request: Request, exc: Exception) -> None:
    """Count ``request`` as refused with ``exc`` if it is a chat or classify request."""
    endpoint = ENDPOINTS.get(request.url.path)
    services = getattr(request.app.state, "services", None)
    if endpoint is None or services is None:
        return  # before start-up there are no metrics to count in
    tenant = getattr(request.state, "tenant_name", None) or "unauthenticated"
    code = exc.code if isinstance(exc, errors.GatewayError) else "internal_error"
    record_refusal(services.metrics, tenant, endpoint, code)


@contextmanager
def refusals_recorded(request: Request) -> Iterator[None]:
    """Run checks that come before admission; whatever they raise is counted here."""
    try:
        yield
    except Exception as exc:
        refused(request, exc)
        raise
