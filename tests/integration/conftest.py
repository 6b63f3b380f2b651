"""One real gateway (real vLLM engine, real SmolLM2 model) for the whole test session.

It runs as a separate process exactly as an operator starts it (``gateway serve``),
with two LoRA adapters, and tests talk to it over HTTP.
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
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.config import Settings
from gateway.models import resolve_model
from tests.adapter_factory import make_random_adapter

START_TIMEOUT_S = 900


@dataclass(frozen=True)
class Gateway:
    url: str
    log: Path
    adapters: tuple[str, ...]

    def post(self, path: str, body: dict, timeout: float = 300) -> httpx.Response:
        return httpx.post(self.url + path, json=body, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    work = tmp_path_factory.mktemp("gateway")
    info = resolve_model(None, Settings().model_cache_dir)
    adapters = {
        "tenant-a": make_random_adapter(info.path, work / "tenant-a", seed=1),
        "tenant-b": make_random_adapter(info.path, work / "tenant-b", seed=2),
    }
    port = _free_port()
    env = {
        **os.environ,
        "GATEWAY_PORT": str(port),
        "GATEWAY_ADAPTERS": json.dumps({k: str(v) for k, v in adapters.items()}),
        "GATEWAY_MAX_TOKENS_CAP": "512",
        "GATEWAY_MAX_MODEL_LEN": "1024",
        "GATEWAY_MAX_BODY_BYTES": "200000",
    }
    log = work / "gateway.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve"], env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"gateway exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"gateway not ready in {START_TIMEOUT_S}s:\n{log.read_text()[-4000:]}")
            time.sleep(1)
        yield Gateway(url=url, log=log, adapters=tuple(adapters))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
