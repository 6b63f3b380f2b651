"""One real gateway (real vLLM engine, real SmolLM2 model) for the whole test session.

It runs as a separate process exactly as an operator starts it (``gateway serve``),
with two LoRA adapters, and tests talk to it over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.bench.launch import LaunchError, launch
from gateway.config import REPO_ROOT, Settings
from gateway.models import resolve_model
from tests.adapter_factory import make_random_adapter

DEMO_ADAPTER = REPO_ROOT / "adapters" / "demo" / "v1"
BANKING77_ADAPTER = REPO_ROOT / "adapters" / "banking77" / "v1"


@dataclass(frozen=True)
class Gateway:
    url: str
    log: Path
    adapters: tuple[str, ...]
    health_answered_while_loading: bool

    def post(self, path: str, body: dict, timeout: float = 300) -> httpx.Response:
        return httpx.post(self.url + path, json=body, timeout=timeout)


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    work = tmp_path_factory.mktemp("gateway")
    info = resolve_model(None, Settings().model_cache_dir)
    adapters = {
        "tenant-a": make_random_adapter(info.path, work / "tenant-a", seed=1),
        "tenant-b": make_random_adapter(info.path, work / "tenant-b", seed=2),
        "demo": DEMO_ADAPTER,
        "banking77": BANKING77_ADAPTER,
    }
    env = {
        "GATEWAY_MAX_TOKENS_CAP": "512",
        "GATEWAY_MAX_MODEL_LEN": "1024",
        "GATEWAY_MAX_BODY_BYTES": "200000",
    }
    try:
        with launch(work / "gateway.log", adapters=adapters, env=env) as running:
            yield Gateway(
                url=running.url,
                log=running.log,
                adapters=tuple(adapters),
                health_answered_while_loading=running.health_answered_while_loading,
            )
    except LaunchError as exc:
        pytest.fail(str(exc))
