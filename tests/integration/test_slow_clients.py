"""Slow clients against the real server (issue 33 finding 1): ``gateway serve`` with the
real engine, a lowered connection cap and a short head deadline, attacked by slowloris
connections from other loopback addresses (127.0.0.2 and up; all of 127/8 is loopback).

Each slow connection sends a partial request head, then one more header line every
second, never the blank line that ends it. Today's uvicorn would hold them forever. Here:
one address past its cap is refused at once while another tenant's request and the
scrape go on; with the public listener full, the operator listener still answers
/health, /ready and /metrics; and every slow connection gets 408 and is closed at the
head deadline, after which the public listener serves again. Bounded: 24 connections,
each gone by the deadline.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import yaml

from gateway.tenancy import hash_key
from gateway_tools.launch import LaunchError, free_port, launch

pytestmark = pytest.mark.integration

KEYS = {"alpha": "slow-alpha-key-0123456789abcdef", "beta": "slow-beta-key-0123456789abcdef"}
METRICS_KEY = "slow-metrics-key-0123456789abcdef"
CAP, PER_CLIENT = 12, 4  # the lowered caps: public connections, and from one address
HEAD_TIMEOUT_S = 30  # long enough for the checks below to run while the attack holds
SLOW_HEAD = b"POST /v1/classify HTTP/1.1\r\nHost: x\r\n"
OPEN = 'gateway_connections_open{listener="public"}'


@dataclass(frozen=True)
class Served:
    url: str
    operator_url: str
    port: int


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("slow-clients")
    tenants = [{"name": name, "key_hashes": [hash_key(key)]} for name, key in KEYS.items()]
    (work / "tenants.yaml").write_text(yaml.safe_dump({"tenants": tenants}))
    operator_port = free_port()
    env = {"GATEWAY_AUTH_MODE": "tenants", "GATEWAY_TENANTS_FILE": str(work / "tenants.yaml"),
           "GATEWAY_METRICS_KEY": METRICS_KEY, "GATEWAY_MAX_NUM_SEQS": "2",
           "GATEWAY_MAX_MODEL_LEN": "1024", "GATEWAY_MAX_TOKENS_CAP": "256",
           "GATEWAY_KV_CACHE_GIB": "0.25", "GATEWAY_MAX_CONNECTIONS": str(CAP),
           "GATEWAY_MAX_CONNECTIONS_PER_CLIENT": str(PER_CLIENT),
           "GATEWAY_HEAD_TIMEOUT_S": str(HEAD_TIMEOUT_S),
           "GATEWAY_OPERATOR_PORT": str(operator_port)}  # fmt: skip
    try:
        with launch(work / "gateway.log", adapters={}, store=work / "store", env=env) as gw:
            port = int(gw.url.rsplit(":", 1)[1])
            yield Served(gw.url, f"http://127.0.0.1:{operator_port}", port)
    except LaunchError as exc:
        pytest.fail(str(exc))


class Slowloris:
    """Slow connections from given source addresses, dripping header lines until closed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.held: list[tuple[socket.socket, float]] = []  # admitted, with when opened
        self._stop = threading.Event()
        self._drip = threading.Thread(target=self._dripping, daemon=True)
        self._drip.start()

    def connect(self, source: str) -> socket.socket:
        address = ("127.0.0.1", self.port)
        return socket.create_connection(address, timeout=3 * HEAD_TIMEOUT_S,
                                        source_address=(source, 0))  # fmt: skip

    def open(self, source: str, count: int) -> None:
        """``count`` slow connections; the server admits them in the order they came."""
        for _ in range(count):
            conn = self.connect(source)
            conn.sendall(SLOW_HEAD)
            self.held.append((conn, time.monotonic()))

    def refused(self, source: str) -> bytes:
        """What a connection from ``source`` is told before it sends anything, to the end."""
        with self.connect(source) as conn:
            return read_to_end(conn)

    def _dripping(self) -> None:
        while not self._stop.wait(1.0):
            conns = [conn for conn, _ in self.held]
            answered, _, _ = select.select(conns, [], [], 0)  # told 408: leave it be
            for conn in conns:
                if conn not in answered:
                    with contextlib.suppress(OSError):  # closed since: wait_closed sees it
                        conn.sendall(b"X-a: b\r\n")

    def wait_closed(self) -> list[tuple[bytes, float]]:
        """Each held connection's last words from the server and its seconds held."""
        return [(read_to_end(conn), time.monotonic() - opened) for conn, opened in self.held]

    def close(self) -> None:
        self._stop.set()
        self._drip.join()
        for conn, _ in self.held:
            conn.close()


def read_to_end(conn: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := conn.recv(4096):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def chat(served: Served, tenant: str) -> httpx.Response:
    body = {"model": "base", "max_tokens": 4, "temperature": 0,
            "messages": [{"role": "user", "content": "Say hi."}]}  # fmt: skip
    headers = {"Authorization": f"Bearer {KEYS[tenant]}"}
    return httpx.post(served.url + "/v1/chat/completions", json=body, headers=headers,
                      timeout=120)  # fmt: skip


def series(url: str) -> dict[str, float]:
    page = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {METRICS_KEY}"},
                     timeout=30)  # fmt: skip
    assert page.status_code == 200, page.text
    lines = [line.rsplit(" ", 1) for line in page.text.splitlines()]
    return {line[0]: float(line[1]) for line in lines if line[0].startswith("gateway_connections_")}


def dropped(values: dict[str, float], reason: str) -> float:
    return values[f'gateway_connections_dropped_total{{listener="public",reason="{reason}"}}']


def public_open(served: Served, expected: float) -> float:
    """The public listener's open connections, once they settle at ``expected`` (a client
    that just closed is released when the server reads its end); read on the operator
    listener, whose own connection is not counted there."""
    deadline = time.monotonic() + 30
    while (found := series(served.operator_url)[OPEN]) != expected:
        if time.monotonic() > deadline:
            return found
        time.sleep(0.1)
    return found


def test_slow_connections_are_capped_and_closed_while_others_are_served(served: Served) -> None:
    attack = Slowloris(served.port)
    try:
        # One address opens its cap's worth, then one more is refused at once; another
        # tenant (another address) is still served, and the scrape too.
        attack.open("127.0.0.2", PER_CLIENT)
        assert attack.refused("127.0.0.2").startswith(b"HTTP/1.1 503 ")
        assert chat(served, "beta").status_code == 200
        assert httpx.get(served.url + "/health", timeout=30).status_code == 200
        assert dropped(series(served.url), "client_cap") == 1
        assert public_open(served, PER_CLIENT) == PER_CLIENT

        # Two more addresses fill the public listener: it refuses everyone at once now
        # (the tenant's address too), while the operator listener answers its routes.
        attack.open("127.0.0.3", PER_CLIENT)
        attack.open("127.0.0.4", CAP - 2 * PER_CLIENT)
        assert public_open(served, CAP) == CAP
        assert attack.refused("127.0.0.5").startswith(b"HTTP/1.1 503 ")
        assert attack.refused("127.0.0.1").startswith(b"HTTP/1.1 503 ")
        assert httpx.get(served.operator_url + "/health", timeout=30).status_code == 200
        assert httpx.get(served.operator_url + "/ready", timeout=30).status_code == 200
        values = series(served.operator_url)
        assert dropped(values, "connection_cap") == 2
        assert dropped(values, "head_timeout") == 0  # all still held, dripping

        # At the head deadline every slow connection is told 408 and closed.
        ends = attack.wait_closed()
        assert [words.split(b"\r\n")[0] for words, _ in ends] == [
            b"HTTP/1.1 408 Request Timeout"
        ] * CAP
        held_s = sorted(seconds for _, seconds in ends)
        print(f"\n{CAP} slow connections held {held_s[0]:.1f}-{held_s[-1]:.1f} s "
              f"(head_timeout_s={HEAD_TIMEOUT_S})")  # fmt: skip
    finally:
        attack.close()
    assert chat(served, "alpha").status_code == 200  # the public listener serves again
    assert public_open(served, 0) == 0
    assert dropped(series(served.operator_url), "head_timeout") == CAP
