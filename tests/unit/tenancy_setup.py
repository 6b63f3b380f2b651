"""A gateway in ``auth_mode: tenants`` with the engine test double, shared by the tenancy
and metrics tests: two adapters (one with two versions) and three tenants."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from gateway.config import Settings
from gateway.tenancy import hash_key
from schemas.intent import DEMO_LABELS
from tests.adapter_factory import make_peft_folder
from tests.fake_engine import FakeEngine

ADMIN = "admin-key-0123456789abcdef"
ALPHA = "alpha-key-0123456789abcdef"
BETA = "beta-key-0123456789abcdef"
GAMMA = "gamma-key-0123456789abcdef"
METRICS = "metrics-key-0123456789abcdef"  # what Prometheus sends
ANSWER = '{"intent":"billing_inquiry","confidence":0.9,"requires_human_agent":false}'


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def tenant_gateway(tmp_path: Path) -> Iterator[tuple[TestClient, FakeEngine, Path]]:
    store = tmp_path / "store"
    for name, version in [("tenant-a", "v1"), ("tenant-a", "v2"), ("tenant-b", "v1")]:
        make_peft_folder(store / name / version, labels=list(DEMO_LABELS))  # legacy: JSON
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(
        yaml.safe_dump(
            {
                "tenants": [
                    {"name": "alpha", "key_hashes": [hash_key(ALPHA)], "allowed_adapters": ["*"]},
                    {"name": "beta", "key_hashes": [hash_key(BETA)],
                     "allowed_adapters": ["tenant-b"], "default_adapter": "tenant-b",
                     "max_tokens": 20, "requests_per_minute": 3},
                    {"name": "gamma", "key_hashes": [hash_key(GAMMA)],
                     "default_schema": "intent_classification"},
                ]
            }
        )
    )  # fmt: skip
    settings = Settings(
        adapter_store=store,
        adapters={"tenant-a": "v1", "tenant-b": "v1"},
        auth_mode="tenants",
        tenants_file=tenants,
        admin_key=ADMIN,
        metrics_key=METRICS,
        max_tokens_cap=100,
        default_max_tokens=50,
        max_model_len=1024,
    )
    engine = FakeEngine()
    from tests.unit.conftest import started_client

    for client in started_client(settings, engine):
        yield client, engine, tmp_path


def classify(client: TestClient, key: str | None, **body: object):
    headers = auth(key) if key else {}
    return client.post("/v1/classify", json={"text": "refund me", **body}, headers=headers)
