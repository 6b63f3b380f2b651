"""Tenant ids and reserved names (issue 33): a tenant's data is keyed by an id a later
tenant of the same name never gets, and the label values the gateway records itself on
/metrics are not tenant names (``tenant="unauthenticated"`` mixed a real tenant's
successes with keyless 401s)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from gateway.api.refusals import CONSOLE_TENANT
from gateway.config import Settings
from gateway.finetune.endings import OPEN_OWNER
from gateway.observability.metrics import INVALID, OTHER
from gateway.service.schema_names import INLINE
from gateway.tenancy import Tenant, TenantDirectory, hash_key
from gateway.tenancy.tenants import RESERVED_NAMES
from tests.unit.tenancy_setup import ADMIN, auth

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def tenant_client(tenant_gateway: tuple[TestClient, object, Path]) -> TestClient:
    return tenant_gateway[0]


def label_words_in_the_code() -> set[str]:
    """Every fixed word the code passes as a ``tenant`` or ``adapter`` label value or as
    the default of one (``tenant or "open"``, ``... or "unauthenticated"``)."""
    words = {CONSOLE_TENANT, OPEN_OWNER, OTHER, INVALID, INLINE, "none"}
    words.add(Settings.model_fields["served_model_name"].default)
    patterns = (r'or "([a-z]+)"\)?$', r'request_labels\([^,]+, "([a-z]+)"', r'"tenant": "([a-z]+)"')
    for path in (ROOT / "gateway").rglob("*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if "tenant" in line or "adapter" in line or "labels" in line:
                for pattern in patterns:
                    words.update(re.findall(pattern, line.strip()))
    return words


def test_every_label_word_of_the_gateway_is_reserved() -> None:
    words = label_words_in_the_code()
    assert {"unauthenticated", "unresolved", "open", "console", "base"} <= words  # found
    assert words - RESERVED_NAMES == set()


@pytest.mark.parametrize("name", [*sorted(RESERVED_NAMES), "Unauthenticated", "OPEN"])
def test_a_reserved_name_is_refused_in_the_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text(
        yaml.safe_dump({"tenants": [{"name": name, "key_hashes": [hash_key("k" * 20)]}]})
    )
    with pytest.raises(ValueError, match="reserved"):
        TenantDirectory.load(path, None)


def test_a_reserved_name_is_refused_by_the_admin_api(tenant_client: TestClient) -> None:
    for name in ("unauthenticated", "other", "invalid", "console", "open", "base"):
        res = tenant_client.put(f"/admin/tenants/{name}", json={}, headers=auth(ADMIN))
        assert res.status_code == 400, (name, res.text)
        assert (
            res.json()["error"]["param"] == "name" and "reserved" in res.json()["error"]["message"]
        )
    assert (
        tenant_client.put("/admin/tenants/opener", json={}, headers=auth(ADMIN)).status_code == 200
    )


def test_a_tenant_created_again_gets_another_id(tenant_client: TestClient) -> None:
    admin = auth(ADMIN)
    first = tenant_client.put("/admin/tenants/delta", json={}, headers=admin).json()["tenant"]
    assert re.fullmatch(r"tn-[0-9a-f]{24}", first["id"])
    updated = tenant_client.put("/admin/tenants/delta", json={"weight": 2}, headers=admin).json()
    assert updated["tenant"]["id"] == first["id"]  # an update keeps it
    tenant_client.delete("/admin/tenants/delta", headers=admin)
    again = tenant_client.put("/admin/tenants/delta", json={}, headers=admin).json()["tenant"]
    assert again["id"] != first["id"]


def test_ids_survive_the_file_and_a_hand_written_tenant_is_keyed_by_name(tmp_path: Path) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text(
        yaml.safe_dump({"tenants": [{"name": "acme", "key_hashes": [hash_key("k" * 20)]}]})
    )
    directory = TenantDirectory.load(path, None)
    assert directory.get("acme").owner_id == "acme"  # type: ignore[union-attr]
    made = Tenant(name="delta", key_hashes=[hash_key("d" * 20)], id="tn-" + "a" * 24)
    directory.upsert(made)
    again = TenantDirectory.load(path, None).get("delta")
    assert again is not None and again.id == made.id and again.owner_id == made.id
    squatter = Tenant(name="tn-" + "a" * 24, key_hashes=[hash_key("e" * 20)])
    with pytest.raises(Exception, match="another tenant's"):
        directory.upsert(squatter)  # a name equal to another tenant's id: one folder, two owners
