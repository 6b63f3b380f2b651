"""Who may hold a connection: caps on open connections, counters, and a quiet log.

uvicorn on its own accepts every connection and waits forever for a request head, so a
client that opens thousands of sockets and sends one header line now and then (slowloris)
holds every file descriptor the process has, and from then on nobody is served, not even
/health. The guard keeps the books for ``gateway.cli.listeners``' protocol: it admits or
refuses each new connection (a cap over all connections, one per client address), counts
what it refused or closed for being slow in bounded Prometheus series, and says so in the
log at most once per interval, so an attack cannot flood the log either.
This module holds no sockets and no timers: the protocol asks, the guard answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

PUBLIC = "public"
OPERATOR = "operator"  # the listener that serves only /health, /ready and /metrics
LISTENERS = (PUBLIC, OPERATOR)
# Why a connection was refused or closed: fixed words, the only label values there are.
CONNECTION_CAP = "connection_cap"
CLIENT_CAP = "client_cap"
HEAD_TIMEOUT = "head_timeout"
BODY_TIMEOUT = "body_timeout"
REASONS = (CONNECTION_CAP, CLIENT_CAP, HEAD_TIMEOUT, BODY_TIMEOUT)
OPERATOR_CONNECTIONS = 64  # probes and a scraper or two; not a setting
LOG_INTERVAL_S = 10.0

log = logging.getLogger("gateway.connections")


@dataclass(frozen=True)
class ConnectionLimits:
    """``max_per_client`` 0: no per-address cap (behind a proxy every client is the proxy)."""

    max_connections: int
    max_per_client: int
    head_timeout_s: float
    body_timeout_s: float
    operator_connections: int = OPERATOR_CONNECTIONS

    def cap(self, listener: str) -> int:
        return self.operator_connections if listener == OPERATOR else self.max_connections


class DropLog:
    """One warning per reason per ``interval_s``: the first drop is logged at once, the
    ones after it are counted and reported with the next line (the counter has them all)."""

    def __init__(
        self, interval_s: float = LOG_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ):
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def note(self, reason: str, detail: str) -> bool:
        """Log ``detail`` unless this reason was logged within the interval; True if logged."""
        now = self.clock()
        last = self._last.get(reason)
        if last is not None and now - last < self.interval_s:
            self._unlogged[reason] = self._unlogged.get(reason, 0) + 1
            return False
        more = self._unlogged.pop(reason, 0)
        since = f"; {more} more since the last such line" if more else ""
        log.warning("%s: %s%s", reason.replace("_", " "), detail, since)
        self._last[reason] = now
        return True


class QuietRepeats(logging.Filter):
    """Lets each of uvicorn's per-connection warnings (``Invalid HTTP request received.``)
    through at most once per ``interval_s``: any client can cause one per connection."""

    def __init__(
        self, interval_s: float = LOG_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or record.exc_info:  # errors keep their traces
            return True
        message, now = str(record.msg), self.clock()
        last = self._last.get(message)
        if last is not None and now - last < self.interval_s:
            return False
        if len(self._last) > 100:  # uvicorn's messages are few and fixed; stay bounded anyway
            self._last.clear()
        self._last[message] = now
        return True


class ConnectionGuard:
    """Open connections per listener and per client address, with their metrics.

    Runs on the event loop only (asyncio protocols call it), so it needs no lock.
    """

    def __init__(self, limits: ConnectionLimits, drop_log: DropLog | None = None) -> None:
        self.limits = limits
        self.drop_log = drop_log or DropLog()
        self.open = dict.fromkeys(LISTENERS, 0)
        self.per_client: dict[str, int] = {}  # public listener only; empty keys removed
        self.operator_ports: set[int] = set()  # set once the operator listener is bound
        self.registry = CollectorRegistry()
        self.dropped = Counter(
            "gateway_connections_dropped",
            "Connections refused at a cap or closed for sending a request head or body too "
            "slowly, by listener and reason.",
            ("listener", "reason"),
            registry=self.registry,
        )
        self.open_gauge = Gauge(
            "gateway_connections_open", "Open client connections.", ("listener",),
            registry=self.registry,
        )  # fmt: skip
        cap = Gauge(
            "gateway_connections_limit", "Most connections a listener holds at once.",
            ("listener",), registry=self.registry,
        )  # fmt: skip
        for listener in LISTENERS:  # every series exists from the start, at zero
            cap.labels(listener).set(limits.cap(listener))
            self.open_gauge.labels(listener).set(0)
            for reason in REASONS:
                self.dropped.labels(listener, reason)

    def listener_of(self, local_port: int | None) -> str:
        return OPERATOR if local_port in self.operator_ports else PUBLIC

    def admit(self, listener: str, client: str) -> str | None:
        """Take a slot for a new connection, or say why not (a reason from ``REASONS``)."""
        if self.open[listener] >= self.limits.cap(listener):
            reason = CONNECTION_CAP
        elif (
            listener == PUBLIC
            and self.limits.max_per_client
            and self.per_client.get(client, 0) >= self.limits.max_per_client
        ):
            reason = CLIENT_CAP
        else:
            self.open[listener] += 1
            self.open_gauge.labels(listener).inc()
            if listener == PUBLIC:
                self.per_client[client] = self.per_client.get(client, 0) + 1
            return None
        self.drop(listener, reason, f"refused {client} on the {listener} listener "
                  f"({self.open[listener]} open, cap {self.limits.cap(listener)}"
                  f"{self._client_note(listener, client)})")  # fmt: skip
        return reason

    def release(self, listener: str, client: str) -> None:
        """Give back the slot ``admit`` took (once per admitted connection)."""
        self.open[listener] -= 1
        self.open_gauge.labels(listener).dec()
        if listener == PUBLIC:
            left = self.per_client.get(client, 0) - 1
            if left > 0:
                self.per_client[client] = left
            else:
                self.per_client.pop(client, None)

    def drop(self, listener: str, reason: str, detail: str) -> None:
        self.dropped.labels(listener, reason).inc()
        self.drop_log.note(reason, detail)

    def _client_note(self, listener: str, client: str) -> str:
        if listener != PUBLIC or not self.limits.max_per_client:
            return ""
        return f"; {self.per_client.get(client, 0)} from it, cap {self.limits.max_per_client}"
