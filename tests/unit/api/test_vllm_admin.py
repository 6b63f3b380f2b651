"""vLLM's /v1/load_lora_adapter and /v1/unload_lora_adapter for controllers written for
vLLM (engine test double): the admin key only, folders inside the store only."""

from __future__ import annotations

import pytest

from tests.unit.conftest import script
from tests.unit.tenancy_setup import ADMIN, ALPHA, ANSWER, auth, classify

LOAD, UNLOAD = "/v1/load_lora_adapter", "/v1/unload_lora_adapter"


@pytest.mark.parametrize("key", [None, ALPHA])
def test_only_the_admin_key_loads_or_unloads(tenant_gateway, key: str | None) -> None:
    client, _, _ = tenant_gateway
    headers = auth(key) if key else {}
    for path, body in ((LOAD, {"lora_name": "tenant-a", "lora_path": "tenant-a/v2"}),
                       (UNLOAD, {"lora_name": "tenant-a"})):  # fmt: skip
        res = client.post(path, json=body, headers=headers)
        assert res.status_code == 401 and res.json()["error"]["code"] == "invalid_api_key"


def test_a_controller_loads_a_version_from_the_store_and_unloads_it(tenant_gateway) -> None:
    client, engine, tmp_path = tenant_gateway
    store = tmp_path / "store"
    body = {"lora_name": "tenant-a@v2", "lora_path": str(store / "tenant-a" / "v2")}
    res = client.post(LOAD, json=body, headers=auth(ADMIN))
    assert res.status_code == 200, res.text
    assert res.text == "Success: LoRA adapter 'tenant-a@v2' added successfully."
    listed = {a["name"]: a for a in client.get("/admin/adapters", headers=auth(ADMIN)).json()
              ["adapters"]}  # fmt: skip
    versions = {v["version"]: v for v in listed["tenant-a"]["versions"]}
    assert versions["v2"]["loaded"] and listed["tenant-a"]["current"] == "v1"  # not promoted
    again = client.post(LOAD, json=body, headers=auth(ADMIN))
    assert again.status_code == 200  # reconcilers repeat themselves
    script(engine, ANSWER)
    assert classify(client, ALPHA, adapter="tenant-a@v2").status_code == 200
    res = client.post(UNLOAD, json={"lora_name": "tenant-a@v2"}, headers=auth(ADMIN))
    assert res.status_code == 200
    assert res.text == "Success: LoRA adapter 'tenant-a@v2' removed successfully."
    listed = client.get("/admin/adapters", headers=auth(ADMIN)).json()["adapters"]
    v2 = next(v for a in listed if a["name"] == "tenant-a" for v in a["versions"]
              if v["version"] == "v2")  # fmt: skip
    assert not v2["loaded"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"lora_name": "tenant-a", "lora_path": "/etc"}, "lora_path"),
        ({"lora_name": "tenant-a", "lora_path": "tenant-a/../../etc"}, "lora_path"),
        ({"lora_name": "tenant-a", "lora_path": "tenant-a"}, "lora_path"),
        ({"lora_name": "tenant-b", "lora_path": "tenant-a/v2"}, "lora_name"),
        ({"lora_name": "tenant-a@v9", "lora_path": "tenant-a/v2"}, "lora_name"),
    ],
)
def test_paths_outside_the_store_and_mismatched_names_are_refused(
    tenant_gateway, body: dict, param: str
) -> None:
    client, _, _ = tenant_gateway
    res = client.post(LOAD, json=body, headers=auth(ADMIN))
    assert res.status_code == 400, res.text
    assert res.json()["error"]["param"] == param
    listed = client.get("/admin/adapters", headers=auth(ADMIN)).json()["adapters"]
    assert [v["version"] for a in listed if a["name"] == "tenant-a" for v in a["versions"]] == [
        "v1"
    ]  # nothing registered
