"""A throwaway Redis server on loopback for the shared rate-limiter tests.

Debian's ``redis-server`` package provides the binary; the server keeps nothing on disk
(``--save ''``, no AOF), works in a temporary folder and listens on a free loopback port.
``stop``/``start`` keep the port, so the outage tests can bring the *same* address back
(with empty data, as a restarted Redis without persistence has).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

import pytest

BINARY = "redis-server"
FixtureScope = Literal["session", "package", "module", "class", "function"]


def require_redis() -> str:
    """The ``redis-server`` binary, or a skip (a failure under CI, which must install it)."""
    found = shutil.which(BINARY) or shutil.which(f"/usr/bin/{BINARY}")
    if found is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command(port: int, *words: str, timeout_s: float = 1.0) -> bytes:
    """Send one command (RESP) and return the raw first reply; no client library needed."""
    payload = f"*{len(words)}\r\n".encode()
    for word in words:
        data = word.encode()
        payload += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(payload)
        return sock.recv(65536)


class RedisServer:
    """One ``redis-server`` process; ``stop`` and ``start`` again reuse the port."""

    def __init__(self, root: Path | None = None, port: int | None = None) -> None:
        self.binary = require_redis()
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="gateway-redis-")) if root is None else root
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port() if port is None else port
        self.log = self.root / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 10.0) -> None:
        if self.running:
            return
        self._log_file = self.log.open("ab")
        self._process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.root), "--daemonize", "no"],
            stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        end = time.monotonic() + timeout_s
        while not self.ping():
            if self._process.poll() is not None or time.monotonic() > end:
                self.stop()
                raise RuntimeError(
                    f"redis-server did not answer on port {self.port}:\n"
                    + self.log.read_text(errors="replace")[-2000:]
                )
            time.sleep(0.02)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop it (SIGTERM, then SIGKILL); the port is free again once this returns."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a paused process would not act on SIGTERM
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout_s)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): it takes connections but never answers, as a
        hung Redis does. ``resume`` thaws it."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def ping(self) -> bool:
        try:
            return _command(self.port, "PING", timeout_s=0.5).startswith(b"+PONG")
        except OSError:
            return False

    def flushall(self) -> None:
        reply = _command(self.port, "FLUSHALL")
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"FLUSHALL failed: {reply!r}")

    def close(self) -> None:
        self.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def redis_server(root: Path | None = None) -> Iterator[RedisServer]:
    """A started server, stopped (and its folder removed) afterwards."""
    server = RedisServer(root)
    try:
        server.start()
        yield server
    finally:
        server.close()


def redis_server_fixture(scope: FixtureScope = "module") -> Any:
    """A pytest fixture with one server for the ``scope``; assign it to a name in a test
    module (``redis = redis_server_fixture()``) and take that name as an argument."""

    @pytest.fixture(scope=scope)
    def _redis_server() -> Iterator[RedisServer]:
        with redis_server() as server:
            yield server

    return _redis_server
