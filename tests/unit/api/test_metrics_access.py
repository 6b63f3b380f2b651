"""Who may read /metrics: in tenants mode only the holder of the metrics key (labels name
every tenant and adapter with their traffic); in loopback development anyone."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import Settings
from gateway.server import create_app
from tests.adapter_factory import FAKE_BASE
from tests.fake_engine import FakeEngine
from tests.unit.tenancy_setup import ADMIN, ALPHA, METRICS, auth

OTHER_KEY = "not-the-metrics-key-0123456789"


def not_started(**settings: object) -> TestClient:
    """The app before start-up (no lifespan): the key check alone decides the answer."""
    app = create_app(Settings(**settings), lambda _: (FakeEngine(), FAKE_BASE))
    return TestClient(app)


def tenants_mode(tmp_path: Path, **extra: object) -> dict[str, object]:
    return {"auth_mode": "tenants", "tenants_file": tmp_path / "tenants.yaml", **extra}


def refusal(res) -> dict:
    assert res.status_code == 401, res.text
    assert res.headers["www-authenticate"] == "Bearer"
    error = res.json()["error"]
    assert error["code"] == "invalid_api_key"
    return error


@pytest.mark.parametrize("key", [None, ALPHA, ADMIN, OTHER_KEY, METRICS + "x", METRICS[:-1]])
def test_tenant_and_admin_keys_do_not_open_metrics(tenant_gateway, key: str | None) -> None:
    client, _, _ = tenant_gateway
    refusal(client.get("/metrics", headers=auth(key) if key else {}))


def test_the_metrics_key_opens_metrics(tenant_gateway) -> None:
    client, _, _ = tenant_gateway
    res = client.get("/metrics", headers=auth(METRICS))
    assert res.status_code == 200
    names = {family.name for family in text_string_to_metric_families(res.text)}
    assert "gateway_requests" in names and "gateway_ready" in names


def test_tenants_mode_without_a_metrics_key_is_closed_with_a_hint(tmp_path: Path) -> None:
    client = not_started(**tenants_mode(tmp_path, admin_key=ADMIN))
    for headers in ({}, auth(ADMIN), auth(OTHER_KEY)):
        error = refusal(client.get("/metrics", headers=headers))
        assert "GATEWAY_METRICS_KEY" in error["hint"]


def test_the_page_before_start_up_is_behind_the_key_too(tmp_path: Path) -> None:
    client = not_started(**tenants_mode(tmp_path, metrics_key=METRICS))
    refusal(client.get("/metrics"))
    res = client.get("/metrics", headers=auth(METRICS))
    assert res.status_code == 200 and "gateway_ready 0.0" in res.text


def test_open_mode_is_open_unless_a_metrics_key_is_set() -> None:
    assert not_started().get("/metrics").status_code == 200
    client = not_started(metrics_key=METRICS)
    refusal(client.get("/metrics"))
    assert client.get("/metrics", headers=auth(METRICS)).status_code == 200


@pytest.mark.parametrize("key", ["short-key", "changeme", "PASSWORD"])
def test_weak_metrics_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="metrics_key must be a random secret"):
        Settings(metrics_key=key)


def test_the_metrics_key_must_not_be_the_admin_key() -> None:
    with pytest.raises(ValueError, match="metrics_key must differ from admin_key"):
        Settings(admin_key=ADMIN, metrics_key=ADMIN)
