"""How ``gateway serve`` listens: uvicorn's h11 protocol with deadlines and caps.

``GuardedH11`` is uvicorn's own h11 protocol (so the head-size cap of
``h11_max_incomplete_event_size`` holds as before) with what it lacks against slow or
greedy clients: a connection must be admitted by the ``ConnectionGuard`` (a cap over all
connections and one per client address), a request head must arrive whole within
``head_timeout_s`` (counted from the connection's opening, or from the first byte of a
later request on a kept-alive connection), and a body within ``body_timeout_s`` of its
head. Idle kept-alive connections close after ``keep_alive_timeout_s`` (uvicorn's own
timer). An optional second listener (``operator_port``) serves only /health, /ready and
/metrics with slots of its own, so probes and the scrape answer while the public
listener is full.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import socket
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.cli.connections import (
    BODY_TIMEOUT,
    HEAD_TIMEOUT,
    OPERATOR,
    OPERATOR_CONNECTIONS,
    ConnectionGuard,
    ConnectionLimits,
    QuietRepeats,
)
from gateway.common.usage import UsageError
from gateway.config import Settings

log = logging.getLogger("gateway.connections")
OPERATOR_PATHS = frozenset({"/health", "/ready", "/metrics"})
OPERATOR_ONLY = "the operator listener serves only /health, /ready and /metrics"
FD_RESERVE = 256  # descriptors left for the engine's pipes, the store, logs and the like
REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"retry-after: 1\r\nconnection: close\r\ncontent-length: 21\r\n\r\ntoo many connections\n"
)
HEAD_TOO_SLOW = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 27\r\n\r\nrequest head took too long\n"
)


def connection_limits(settings: Settings) -> ConnectionLimits:
    """The caps from the settings, the overall one lowered to what the process's open-file
    limit leaves (after raising the soft limit towards the hard one where allowed)."""
    wanted = settings.max_connections + OPERATOR_CONNECTIONS + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    cap = settings.max_connections
    if soft != resource.RLIM_INFINITY and soft < wanted:
        cap = max(1, soft - OPERATOR_CONNECTIONS - FD_RESERVE)
        log.warning(
            "max_connections=%d lowered to %d: the open-file limit (RLIMIT_NOFILE) is %d",
            settings.max_connections, cap, soft,
        )  # fmt: skip
    return ConnectionLimits(
        max_connections=cap,
        max_per_client=settings.max_connections_per_client,
        head_timeout_s=settings.head_timeout_s,
        body_timeout_s=settings.body_timeout_s,
    )


def operator_only(app: Callable) -> Callable:
    """The app as the operator listener serves it: its three routes, 404 for the rest."""

    async def serve(scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["path"] not in OPERATOR_PATHS:
            body = json.dumps({"error": {"message": OPERATOR_ONLY, "code": "not_found"}}).encode()
            headers = [(b"content-type", b"application/json"),
                       (b"content-length", str(len(body)).encode())]  # fmt: skip
            await send({"type": "http.response.start", "status": 404, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return serve


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol, admitted by ``guard`` and held to its deadlines."""

    guard: ConnectionGuard  # set on the subclass ``guarded_h11`` makes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.listener: str | None = None  # set once admitted; released on connection_lost
        self.peer = "unknown"
        self.head_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None
        self.timed_cycle: object = None  # the request whose head arrived last
        self.head_bytes = 0  # of the head being waited for

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.peer = self.client[0] if self.client else "unknown"
        listener = self.guard.listener_of(self.server[1] if self.server else None)
        if self.guard.admit(listener, self.peer) is not None:
            transport.write(REFUSED)
            transport.close()
            return
        self.listener = listener
        if listener == OPERATOR:
            self.app = operator_only(self.app)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._cancel_timers()
        if self.listener is not None:
            self.guard.release(self.listener, self.peer)
            self.listener = None

    def data_received(self, data: bytes) -> None:
        if self.listener is None:  # refused: the transport is closing
            return
        if self._awaiting_head():
            if self.head_timer is None:  # a later request's first byte on a kept-alive one
                self._arm_head_timer()
            self.head_bytes += len(data)
        super().data_received(data)
        self._follow_cycle()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_cycle()  # a pipelined request may have started

    def _unsupported_upgrade_warning(self) -> None:
        """No route speaks WebSocket (``ws: none``): an Upgrade header is ignored and the
        request served as plain HTTP, without uvicorn's two warnings per request, which
        would let any client write to the log at will."""

    def _awaiting_head(self) -> bool:
        return self.cycle is self.timed_cycle and (
            self.cycle is None or self.cycle.response_complete
        )

    def _follow_cycle(self) -> None:
        """A new request's head has arrived: stop its head deadline, start its body's."""
        if self.transport.is_closing():
            self._cancel_timers()
            return
        if self.cycle is not self.timed_cycle:
            self.timed_cycle = self.cycle
            self._cancel(self.head_timer)
            self.head_timer, self.head_bytes = None, 0
            self._cancel(self.body_timer)
            self.body_timer = None
            if self.cycle.more_body:
                self.body_timer = self.loop.call_later(
                    self.guard.limits.body_timeout_s, self._body_too_slow
                )
        if self.body_timer is not None and not self.cycle.more_body:
            self._cancel(self.body_timer)
            self.body_timer = None

    def _arm_head_timer(self) -> None:
        self.head_bytes = 0
        self.head_timer = self.loop.call_later(
            self.guard.limits.head_timeout_s, self._head_too_slow
        )

    def _head_too_slow(self) -> None:
        self.head_timer = None
        if self.transport.is_closing() or self.listener is None:
            return
        if self.head_bytes:  # a partial head: say why; a silent connection is just closed
            self.transport.write(HEAD_TOO_SLOW)
        self.guard.drop(self.listener, HEAD_TIMEOUT, f"closed {self.peer}: no whole request "
                        f"head in {self.guard.limits.head_timeout_s:g} s "
                        f"({self.head_bytes} bytes of it)")  # fmt: skip
        self.transport.close()

    def _body_too_slow(self) -> None:
        """The request's handler then reads a disconnect, as if the client had gone."""
        self.body_timer = None
        if self.transport.is_closing() or self.listener is None:
            return
        self.guard.drop(self.listener, BODY_TIMEOUT, f"closed {self.peer}: request body not "
                        f"whole in {self.guard.limits.body_timeout_s:g} s")  # fmt: skip
        self.transport.close()

    def _cancel_timers(self) -> None:
        self._cancel(self.head_timer)
        self._cancel(self.body_timer)
        self.head_timer = self.body_timer = None

    @staticmethod
    def _cancel(timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()


def guarded_h11(guard: ConnectionGuard) -> type[GuardedH11]:
    """A protocol class bound to ``guard`` (uvicorn builds one instance per connection)."""
    return type("GuardedH11", (GuardedH11,), {"guard": guard})


def serve_options(settings: Settings, guard: ConnectionGuard | None = None) -> dict[str, Any]:
    """uvicorn's arguments. h11, not httptools: only h11 caps the request head (httptools
    reads a header of any size), and a client must not be able to make us buffer one;
    ``GuardedH11`` is h11 with deadlines and connection caps."""
    guard = guard or ConnectionGuard(connection_limits(settings))
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": "info",
        "access_log": False,
        "http": guarded_h11(guard),
        "ws": "none",  # no route speaks WebSocket; an upgrade would leave the guard's books
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        # SIGTERM: stop accepting, let in-flight requests finish up to the grace period.
        "timeout_graceful_shutdown": int(settings.shutdown_grace_s) or None,
    }


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def run(app: Any, settings: Settings) -> None:
    """Bind the public (and operator) listener and serve ``app`` until SIGTERM."""
    import uvicorn

    guard = ConnectionGuard(connection_limits(settings))
    app.state.connection_metrics = guard.registry  # /metrics shows them
    sockets = [bind(settings.host, settings.port)]
    if settings.operator_port is not None:
        operator = bind(settings.operator_host or settings.host, settings.operator_port)
        guard.operator_ports.add(operator.getsockname()[1])
        sockets.append(operator)
    for sock in sockets:
        host, port = sock.getsockname()[:2]
        kind = "operator" if port in guard.operator_ports else "public"
        log.info("listening on http://%s:%d (%s)", host, port, kind)
    config = uvicorn.Config(app, **serve_options(settings, guard))  # configures logging
    logging.getLogger("uvicorn.error").addFilter(QuietRepeats())
    uvicorn.Server(config).run(sockets=sockets)
