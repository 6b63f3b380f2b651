"""One real gateway (real vLLM engine, real SmolLM2 model) for the whole test session.

It runs as a separate process exactly as an operator starts it (``gateway serve``),
with two LoRA adapters, and tests talk to it over HTTP.
"""

from __future__ import annotations

import gc
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from gateway.config import REPO_ROOT, Settings
from gateway.models import resolve_model
from gateway.tenancy import hash_key
from gateway_tools.launch import LaunchError, launch
from tests.adapter_factory import make_random_adapter

DEMO_ADAPTER = REPO_ROOT / "adapters" / "demo" / "v1"
BANKING77_ADAPTER = REPO_ROOT / "adapters" / "banking77" / "v2"
ADMIN_KEY = "integration-admin-key-0123456789"
METRICS_KEY = "integration-metrics-key-0123456789"  # what Prometheus sends to /metrics
# Two tenants: "alpha" may use every adapter; "beta" only tenant-b and demo, with limits.
TENANT_KEYS = {"alpha": "alpha-key-0123456789abcdef", "beta": "beta-key-0123456789abcdef"}


@pytest.fixture(autouse=True)
def collect_garbage_after_each_test() -> Iterator[None]:
    """Collect after every test, so a socket or file a test leaks raises its
    ResourceWarning (an error here) in that test, not in whichever test runs next."""
    yield
    gc.collect()


@dataclass(frozen=True)
class Gateway:
    url: str
    log: Path
    store: Path
    adapters: tuple[str, ...]
    health_answered_while_loading: bool
    key: str = TENANT_KEYS["alpha"]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def post(self, path: str, body: dict, timeout: float = 300, key: str | None = None):
        headers = {"Authorization": f"Bearer {key or self.key}"}
        return httpx.post(self.url + path, json=body, timeout=timeout, headers=headers)

    def get(self, path: str, key: str | None = None) -> httpx.Response:
        return httpx.get(self.url + path, headers={"Authorization": f"Bearer {key or self.key}"})

    def admin(self, method: str, path: str, body: dict | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        return httpx.request(method, self.url + path, json=body, headers=headers, timeout=120)


def write_tenants(path: Path) -> Path:
    tenants = [
        {"name": "alpha", "key_hashes": [hash_key(TENANT_KEYS["alpha"])],
         "allowed_adapters": ["*"]},
        {"name": "beta", "key_hashes": [hash_key(TENANT_KEYS["beta"])],
         "allowed_adapters": ["tenant-b", "demo"], "default_adapter": "demo",
         "max_tokens": 128, "max_concurrency": 8},
    ]  # fmt: skip
    path.write_text(yaml.safe_dump({"tenants": tenants}))
    return path


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    work = tmp_path_factory.mktemp("gateway")
    store = work / "store"
    info = resolve_model(None, Settings().model_cache_dir)
    make_random_adapter(info, store / "tenant-a" / "v1", seed=1)
    make_random_adapter(info, store / "tenant-b" / "v1", seed=2)
    for source in (DEMO_ADAPTER, BANKING77_ADAPTER):
        shutil.copytree(source, store / source.parent.name / source.name)
    adapters = {
        "tenant-a": "v1",
        "tenant-b": "v1",
        "demo": "v1",
        "banking77": BANKING77_ADAPTER.name,
    }
    env = {
        "GATEWAY_MAX_TOKENS_CAP": "512",
        "GATEWAY_MAX_MODEL_LEN": "1024",
        "GATEWAY_MAX_BODY_BYTES": "200000",
        "GATEWAY_ADMIN_KEY": ADMIN_KEY,
        "GATEWAY_METRICS_KEY": METRICS_KEY,
        "GATEWAY_AUTH_MODE": "tenants",
        "GATEWAY_TENANTS_FILE": str(write_tenants(work / "tenants.yaml")),
    }
    try:
        with launch(work / "gateway.log", adapters=adapters, store=store, env=env) as running:
            yield Gateway(
                url=running.url,
                log=running.log,
                store=store,
                adapters=tuple(adapters),
                health_answered_while_loading=running.health_answered_while_loading,
            )
    except LaunchError as exc:
        pytest.fail(str(exc))
