"""Start ``gateway serve`` as a child process, as an operator would, and wait for /ready.

Shared by the benchmarks and the integration tests so both measure the same thing.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from gateway.common.usage import UsageError


class LaunchError(RuntimeError):
    """The gateway exited or never became ready; the message holds its log tail."""


@dataclass(frozen=True)
class RunningGateway:
    url: str
    log: Path
    pid: int
    seconds_to_ready: float
    health_answered_while_loading: bool


def require_ready(url: str) -> None:
    """Fail at once, in one line, when ``url`` has no ready gateway: a benchmark run against
    it would otherwise record every request as an error."""
    try:
        status = httpx.get(url.rstrip("/") + "/ready", timeout=10).status_code
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise UsageError(f"cannot reach a gateway at {url}: {exc}") from exc
    if status != 200:
        raise UsageError(f"the gateway at {url} is not ready (GET /ready answered {status})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def launch(
    log: Path,
    *,
    adapters: dict[str, str] | None = None,
    store: Path | None = None,
    env: dict[str, str] | None = None,
    timeout_s: float = 900,
    wrapper: list[str] | None = None,
) -> Iterator[RunningGateway]:
    """``wrapper`` prefixes the command (e.g. ``py-spy record ... --``), for profiling."""
    port = free_port()
    child_env = {**os.environ, "GATEWAY_PORT": str(port), "GATEWAY_HOST": "127.0.0.1"}
    if adapters is not None:  # name -> version, registered at start
        child_env["GATEWAY_ADAPTERS"] = json.dumps(adapters)
    if store is not None:
        child_env["GATEWAY_ADAPTER_STORE"] = str(store)
    child_env.update(env or {})
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    health_while_loading = False
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*(wrapper or []), sys.executable, "-m", "gateway.cli", "serve"],
            env=child_env,
            stdout=out,
            stderr=out,
        )
    try:
        while True:
            if proc.poll() is not None:
                raise LaunchError(f"gateway exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
                health = httpx.get(url + "/health", timeout=2)
                health_while_loading |= health.status_code == 200
            except httpx.TransportError:
                pass
            if time.perf_counter() - started > timeout_s:
                raise LaunchError(f"not ready in {timeout_s:.0f}s:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield RunningGateway(
            url, log, proc.pid, time.perf_counter() - started, health_while_loading
        )
    finally:
        if wrapper:  # stop the gateway itself; the wrapper (a profiler) then writes and exits
            for child in psutil.Process(proc.pid).children():
                child.send_signal(signal.SIGTERM)
        stop(proc, signal_first=not wrapper)


def stop(proc: subprocess.Popen, signal_first: bool = True, timeout_s: float = 60) -> None:
    """SIGTERM (a graceful stop), then SIGKILL if it has not exited in ``timeout_s``."""
    if signal_first:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
