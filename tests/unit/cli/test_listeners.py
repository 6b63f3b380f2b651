"""uvicorn as ``gateway serve`` runs it (``GuardedH11``), in front of a trivial app, on
loopback: slow heads and bodies are closed at their deadlines, caps refuse at once, and
the operator listener answers while the public one is full. Deadlines are set to a
fraction of a second; the tests wait for what happens, never assert how long it took."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import uvicorn

from gateway.cli.connections import (
    BODY_TIMEOUT,
    HEAD_TIMEOUT,
    OPERATOR_CONNECTIONS,
    PUBLIC,
    ConnectionGuard,
)
from gateway.cli.listeners import (
    FD_RESERVE,
    GuardedH11,
    bind,
    connection_limits,
    serve_options,
)
from gateway.common.usage import UsageError
from gateway.config import Settings

GET = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
WAIT_S = 30  # upper bound on waiting for an event, never an assertion about time


@dataclass
class Served:
    public: tuple[str, int]
    operator: tuple[str, int]
    guard: ConnectionGuard
    disconnects: list[str]  # paths whose handler read http.disconnect

    def connect(self, source: str = "127.0.0.1", operator: bool = False) -> socket.socket:
        address = self.operator if operator else self.public
        return socket.create_connection(address, timeout=WAIT_S, source_address=(source, 0))

    def dropped(self, reason: str) -> float:
        labels = {"listener": PUBLIC, "reason": reason}
        return self.guard.registry.get_sample_value("gateway_connections_dropped_total", labels)


async def app(scope: dict, receive: Callable, send: Callable, seen: list[str]) -> None:
    if scope["type"] != "http":
        return
    while (message := await receive())["type"] == "http.request" and message["more_body"]:
        pass  # read the whole body, as a route parsing JSON does
    if message["type"] == "http.disconnect":
        seen.append(scope["path"])
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})  # fmt: skip
    await send({"type": "http.response.body", "body": b"ok"})


@contextmanager
def serving(**settings: object) -> Iterator[Served]:
    values = {"head_timeout_s": 0.5, "body_timeout_s": 0.5, "keep_alive_timeout_s": 5}
    config = Settings(**{**values, **settings})
    guard = ConnectionGuard(connection_limits(config))
    public = socket.create_server(("127.0.0.1", 0))
    operator = socket.create_server(("127.0.0.1", 0))
    guard.operator_ports.add(operator.getsockname()[1])
    seen: list[str] = []
    options = {**serve_options(config, guard), "lifespan": "off", "interface": "asgi3"}
    server = uvicorn.Server(uvicorn.Config(lambda s, r, w: app(s, r, w, seen), **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [public, operator]})
    thread.start()
    try:
        until(lambda: server.started)
        yield Served(public.getsockname(), operator.getsockname(), guard, seen)
    finally:
        server.should_exit = True
        thread.join()
        public.close()
        operator.close()


def until(condition: Callable[[], object]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "the awaited state never came"
        time.sleep(0.01)


def answer(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := conn.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks)


def status(conn: socket.socket, request: bytes = GET) -> bytes:
    conn.sendall(request)
    return conn.recv(4096).split(b"\r\n")[0]


def test_the_protocol_is_uvicorns_h11_so_the_head_size_cap_holds() -> None:
    protocol = serve_options(Settings(max_header_bytes=2048))["http"]
    assert issubclass(protocol, GuardedH11)
    with serving(max_header_bytes=2048) as served, served.connect() as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 4096)
        assert answer(conn).startswith(b"HTTP/1.1 400 ")


def test_a_partial_head_gets_408_and_the_connection_closes() -> None:
    with serving() as served, served.connect() as slow, served.connect() as silent:
        slow.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\n")
        slow.sendall(b"X-a: b\r\n")  # a slowloris' drip: more header lines, never the end
        assert answer(slow).startswith(b"HTTP/1.1 408 Request Timeout")
        assert answer(silent) == b""  # never sent a byte: closed without an answer
        until(lambda: served.guard.open[PUBLIC] == 0)  # both slots given back
        assert served.dropped(HEAD_TIMEOUT) == 2


def test_kept_alive_connections_serve_request_after_request() -> None:
    """The head deadline restarts with each request, so a busy kept-alive connection is
    never cut: ten requests, each after the previous answer, on one connection."""
    with serving(keep_alive_timeout_s=5) as served, served.connect() as conn:
        for _ in range(10):
            assert status(conn) == b"HTTP/1.1 200 OK"
        assert served.dropped(HEAD_TIMEOUT) == 0


def test_an_idle_kept_alive_connection_closes() -> None:
    with serving(keep_alive_timeout_s=0.2, head_timeout_s=60) as served, served.connect() as conn:
        assert status(conn) == b"HTTP/1.1 200 OK"
        assert answer(conn) == b""  # closed by the keep-alive timer, not by a deadline
        until(lambda: served.guard.open[PUBLIC] == 0)
        assert served.dropped(HEAD_TIMEOUT) == 0


def test_a_slow_body_is_cut_and_its_handler_sees_a_disconnect() -> None:
    head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    with serving(head_timeout_s=60) as served, served.connect() as conn:
        conn.sendall(head + b"x" * 10)  # 10 of 100 bytes, then nothing
        assert answer(conn) == b""
        until(lambda: served.disconnects == ["/upload"])
        assert served.dropped(BODY_TIMEOUT) == 1
        with served.connect() as other:  # a whole body in time is served
            assert status(other, head + b"x" * 100) == b"HTTP/1.1 200 OK"


def test_one_address_is_capped_and_another_still_served() -> None:
    with serving(max_connections_per_client=2, head_timeout_s=60) as served:
        held = [served.connect("127.0.0.2") for _ in range(2)]
        try:
            until(lambda: served.guard.per_client.get("127.0.0.2") == 2)
            with served.connect("127.0.0.2") as third:
                assert answer(third).startswith(b"HTTP/1.1 503 Service Unavailable")
            with served.connect("127.0.0.1") as other:
                assert status(other) == b"HTTP/1.1 200 OK"
        finally:
            for conn in held:
                conn.close()


def test_at_the_overall_cap_the_operator_listener_still_answers() -> None:
    with serving(max_connections=3, max_connections_per_client=0, head_timeout_s=60) as served:
        held = [served.connect(f"127.0.0.{n}") for n in (2, 3, 4)]
        try:
            until(lambda: served.guard.open[PUBLIC] == 3)
            with served.connect() as late:
                assert answer(late).startswith(b"HTTP/1.1 503 Service Unavailable")
            for path in (b"/health", b"/ready", b"/metrics"):
                with served.connect(operator=True) as probe:
                    request = b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n"
                    assert status(probe, request) == b"HTTP/1.1 200 OK"
            with served.connect(operator=True) as probe:  # only those three routes
                assert status(probe) == b"HTTP/1.1 404 Not Found"
        finally:
            for conn in held:
                conn.close()


def test_a_taken_port_is_a_one_line_usage_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind("127.0.0.1", port)


def test_the_cap_is_lowered_to_what_the_open_file_limit_leaves(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A hard limit of 1,024 descriptors cannot hold 2,048 connections: the cap becomes
    what is left after the operator listener's slots and the reserve, with a warning."""
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 1024))
    monkeypatch.setattr(resource, "setrlimit", lambda *_: None)
    with caplog.at_level(logging.WARNING, logger="gateway.connections"):
        limits = connection_limits(Settings(max_connections=2048))
    assert limits.max_connections == 1024 - OPERATOR_CONNECTIONS - FD_RESERVE
    assert "max_connections=2048 lowered to" in caplog.text
    assert connection_limits(Settings(max_connections=100)).max_connections == 100


def test_an_upgrade_header_is_served_as_plain_http_without_a_log_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No route speaks WebSocket; uvicorn would log two warnings per such request."""
    warned: list[str] = []
    monkeypatch.setattr(logging.getLogger("uvicorn.error"), "warning", warned.append)
    upgrade = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    with serving() as served, served.connect() as conn:
        assert status(conn, upgrade) == b"HTTP/1.1 200 OK"
    assert warned == []
