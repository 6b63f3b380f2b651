"""Keys, tenants, limits and the admin API over HTTP, with the FakeEngine test double."""

from __future__ import annotations

import logging

import pytest

from gateway.tenancy import hash_key
from tests.unit.conftest import script
from tests.unit.tenancy_setup import ADMIN, ALPHA, ANSWER, BETA, GAMMA, auth, classify


def test_keys_are_required_and_kept_apart(tenant_gateway) -> None:
    client, _, _ = tenant_gateway
    for key in (None, "wrong-key-0123456789", ADMIN):  # the admin key is not a tenant key
        res = classify(client, key)
        assert res.status_code == 401, key
        assert res.json()["error"]["code"] == "invalid_api_key"
        assert res.headers["www-authenticate"] == "Bearer"
    res = client.get("/admin/adapters", headers=auth(ALPHA))  # nor a tenant key an admin key
    assert res.status_code == 401
    assert client.get("/admin/adapters").status_code == 401
    assert client.get("/admin/adapters", headers=auth(ADMIN)).status_code == 200
    assert client.get("/health").status_code == 200  # probes need no key


def test_foreign_and_unknown_adapters_look_the_same_to_a_tenant(tenant_gateway) -> None:
    client, _, _ = tenant_gateway
    foreign = classify(client, BETA, adapter="tenant-a")
    unknown = classify(client, BETA, adapter="no-such-adapter")
    assert foreign.status_code == unknown.status_code == 403
    assert foreign.json()["error"]["code"] == unknown.json()["error"]["code"] == "adapter_forbidden"
    assert classify(client, ALPHA, adapter="no-such-adapter").status_code == 404
    ids = [m["id"] for m in client.get("/v1/models", headers=auth(BETA)).json()["data"]]
    assert ids == ["base", "tenant-b"]


def test_tenant_defaults_and_caps(tenant_gateway) -> None:
    client, engine, _ = tenant_gateway
    script(engine, ANSWER)
    res = classify(client, BETA)  # no adapter named: the tenant's default
    assert res.status_code == 200, res.text
    assert res.headers["x-gateway-adapter"] == "tenant-b"
    body = {"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}
    res = client.post("/v1/chat/completions", json=body, headers=auth(BETA))
    assert res.status_code == 400
    assert res.json()["error"]["code"] == "max_tokens_exceeded"
    assert "your cap of 20" in res.json()["error"]["message"]


def test_tenant_default_schema_applies_when_none_is_asked(tenant_gateway) -> None:
    client, engine, _ = tenant_gateway
    body = {"model": "base", "messages": [{"role": "user", "content": "hi"}]}
    script(engine, "plain prose, not JSON")
    res = client.post("/v1/chat/completions", json=body, headers=auth(GAMMA))
    assert res.status_code == 502  # prose fails the tenant's default contract
    assert engine.calls[-1].json_schema is not None
    script(engine, ANSWER)
    res = client.post("/v1/chat/completions", json=body, headers=auth(GAMMA))
    assert res.status_code == 200 and res.headers["x-gateway-schema"] == "intent_classification"
    text = {**body, "response_format": {"type": "text"}}  # an explicit choice wins
    script(engine, "plain prose, not JSON")
    assert client.post("/v1/chat/completions", json=text, headers=auth(GAMMA)).status_code == 200


def test_rate_limit_answers_429_with_retry_after(tenant_gateway) -> None:
    client, engine, _ = tenant_gateway
    script(engine, ANSWER)
    codes = [classify(client, BETA).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    res = classify(client, BETA)
    assert res.json()["error"]["code"] == "rate_limited"
    assert int(res.headers["retry-after"]) >= 1
    assert classify(client, ALPHA).status_code == 200  # other tenants are not affected


def test_promote_and_rollback_change_the_served_version(tenant_gateway) -> None:
    client, engine, _ = tenant_gateway
    script(engine, ANSWER)
    admin = auth(ADMIN)
    assert classify(client, ALPHA, adapter="tenant-a").headers["x-gateway-adapter-version"] == "v1"
    res = client.post("/admin/adapters", json={"path": "tenant-a/v2"}, headers=admin)
    assert res.status_code == 200, res.text
    res = client.post("/admin/adapters/tenant-a/promote", json={"version": "v2"}, headers=admin)
    assert res.json() == {"name": "tenant-a", "previous": "v1", "current": "v2"}
    res = classify(client, ALPHA, adapter="tenant-a")
    assert res.headers["x-gateway-adapter-version"] == "v2"
    assert engine.calls[-1].lora is not None and engine.calls[-1].lora.name == "tenant-a@v2"
    res = client.delete("/admin/adapters/tenant-a/v2", headers=admin)
    assert res.status_code == 409  # the current version
    assert client.post("/admin/adapters/tenant-a/rollback", headers=admin).json()["current"] == "v1"
    assert classify(client, ALPHA, adapter="tenant-a").headers["x-gateway-adapter-version"] == "v1"
    listed = client.get("/admin/adapters", headers=admin).json()["adapters"]
    assert {a["name"]: a["current"] for a in listed} == {"tenant-a": "v1", "tenant-b": "v1"}


def test_a_canary_takes_its_share_until_it_ends(tenant_gateway) -> None:
    """The weight is a share of requests (the coin is fixed here); the version header says
    which version answered; promotion ends the canary."""
    client, engine, _ = tenant_gateway
    script(engine, ANSWER)
    admin = auth(ADMIN)
    assert client.post("/admin/adapters", json={"path": "tenant-a/v2"}, headers=admin).is_success
    for body, code in (({"version": "v9", "weight": 0.1}, 404), ({"version": "v1", "weight": 0.1},
                       409), ({"version": "v2", "weight": 1.5}, 400),
                       ({"version": "v2", "weight": 0}, 400)):  # fmt: skip
        res = client.post("/admin/adapters/tenant-a/canary", json=body, headers=admin)
        assert res.status_code == code, (body, res.text)
    res = client.post("/admin/adapters/tenant-a/canary", json={"version": "v2", "weight": 0.3},
                      headers=admin)  # fmt: skip
    assert res.json() == {"name": "tenant-a", "current": "v1", "canary": "v2", "canary_weight": 0.3}
    registry = client.app.state.services.adapters
    coins = iter([0.1, 0.5, 0.29, 0.31])
    registry.pick = lambda: next(coins)
    served = [classify(client, ALPHA, adapter="tenant-a").headers["x-gateway-adapter-version"]
              for _ in range(4)]  # fmt: skip
    assert served == ["v2", "v1", "v2", "v1"]
    listed = {a["name"]: a for a in client.get("/admin/adapters", headers=admin).json()["adapters"]}
    assert (listed["tenant-a"]["canary"], listed["tenant-a"]["canary_weight"]) == ("v2", 0.3)
    assert client.delete("/admin/adapters/tenant-a/v2", headers=admin).status_code == 409
    history = client.get("/admin/adapters/tenant-a/history", headers=admin).json()
    assert history == {"name": "tenant-a", "rollback_stack": []}
    res = client.post("/admin/adapters/tenant-a/promote", json={"version": "v2"}, headers=admin)
    assert res.status_code == 200
    listed = {a["name"]: a for a in client.get("/admin/adapters", headers=admin).json()["adapters"]}
    assert "canary" not in listed["tenant-a"] and listed["tenant-a"]["current"] == "v2"
    state = client.get("/admin/state", headers=admin).json()
    assert state["backend"] == "files"


@pytest.mark.parametrize(
    "path", ["../x", "/etc/passwd", "tenant-a/../../etc", "%2e%2e/v1", "tenant-a", "base/v1"]
)
def test_admin_register_refuses_path_tricks(tenant_gateway, path: str) -> None:
    client, _, _ = tenant_gateway
    res = client.post("/admin/adapters", json={"path": path}, headers=auth(ADMIN))
    assert res.status_code == 400
    assert res.json()["error"]["code"] in {"adapter_invalid", "invalid_request"}


@pytest.mark.parametrize(
    "url", ["/admin/adapters/..%2Fx/promote", "/admin/adapters/%2e%2e/promote"]
)
def test_admin_routes_refuse_encoded_names(tenant_gateway, url: str) -> None:
    client, _, _ = tenant_gateway
    res = client.post(url, json={"version": "v1"}, headers=auth(ADMIN))
    assert res.status_code in {400, 404}


def test_admin_creates_a_tenant_whose_key_works_once_shown(tenant_gateway) -> None:
    client, _, tmp = tenant_gateway
    spec = {"allowed_adapters": ["tenant-a"], "requests_per_minute": 60}
    res = client.put("/admin/tenants/delta", json=spec, headers=auth(ADMIN))
    assert res.status_code == 200, res.text
    key = res.json()["api_key"]
    assert "key_hashes" not in res.json()["tenant"]
    ids = [m["id"] for m in client.get("/v1/models", headers=auth(key)).json()["data"]]
    assert ids == ["base", "tenant-a"]
    stored = (tmp / "tenants.yaml").read_text()
    assert key not in stored and hash_key(key) in stored
    again = client.put("/admin/tenants/delta", json=spec, headers=auth(ADMIN)).json()
    assert again["created"] is False and "api_key" not in again


def test_admin_refuses_escalation_labels_an_adapter_lacks(tenant_gateway) -> None:
    client, engine, _ = tenant_gateway
    spec = {"allowed_adapters": ["*"], "escalation": {"tenant-a": {"labels": ["weather"]}}}
    res = client.put("/admin/tenants/delta", json=spec, headers=auth(ADMIN))
    assert res.status_code == 400, res.text
    assert res.json()["error"]["param"] == "escalation.tenant-a.labels"
    assert "weather" in res.json()["error"]["message"]
    spec["escalation"] = {"tenant-a": {"threshold": 1.0, "labels": ["billing_inquiry"]},
                          "not-registered-yet": {"labels": ["anything"]}}  # fmt: skip
    res = client.put("/admin/tenants/delta", json=spec, headers=auth(ADMIN))
    assert res.status_code == 200, res.text
    script(engine, ANSWER)  # billing_inquiry: on delta's list for tenant-a only
    key = res.json()["api_key"]
    answer = classify(client, key, adapter="tenant-a").json()
    assert answer["escalation"]["reason"] == "escalation_label"
    assert answer["requires_human_agent"] is True
    assert classify(client, ALPHA, adapter="tenant-a").json()["requires_human_agent"] is False


def test_keys_never_reach_the_logs(tenant_gateway, caplog: pytest.LogCaptureFixture) -> None:
    client, engine, _ = tenant_gateway
    script(engine, ANSWER)
    caplog.set_level(logging.DEBUG)
    classify(client, ALPHA)
    classify(client, "wrong-key-0123456789")
    client.get("/admin/adapters", headers=auth(ADMIN))
    text = caplog.text
    for secret in (ALPHA, ADMIN, "wrong-key-0123456789"):
        assert secret not in text


def test_admin_upload_over_http(tenant_gateway) -> None:
    import io
    import tarfile

    from tests.adapter_factory import make_peft_folder

    client, _, tmp = tenant_gateway
    source = make_peft_folder(tmp / "src" / "tenant-a" / "v9")

    def archive(extra: tuple[str, bytes] | None = None) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for path in source.iterdir():
                tar.add(path, arcname=path.name)
            if extra:
                info = tarfile.TarInfo(extra[0])
                info.size = len(extra[1])
                tar.addfile(info, io.BytesIO(extra[1]))
        return buffer.getvalue()

    url = "/admin/adapters/upload?name=tenant-a&version=v9"
    bad = client.post(url, content=archive(("../../escape.txt", b"x")), headers=auth(ADMIN))
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "adapter_invalid"
    assert not (tmp / "store" / "tenant-a" / "v9").exists()
    assert not (tmp / "escape.txt").exists()
    res = client.post(url, content=archive(), headers=auth(ADMIN))
    assert res.status_code == 200, res.text
    assert res.json()["registered"] == "tenant-a/v9"
    versions = {
        v["version"]
        for a in client.get("/admin/adapters", headers=auth(ADMIN)).json()["adapters"]
        for v in a["versions"]
    }
    assert "v9" in versions
    again = client.post(url, content=archive(), headers=auth(ADMIN))
    assert again.status_code == 409 and again.json()["error"]["code"] == "adapter_version_exists"


def test_a_fine_tuned_version_is_its_tenants_until_it_is_made_current(tenant_gateway) -> None:
    # The job store names the tenant whose job made a version; here "beta" made v2.
    client, engine, _ = tenant_gateway
    script(engine, ANSWER, ANSWER, ANSWER)
    admin = auth(ADMIN)
    client.app.state.services.chat.version_owner = lambda name, version: (
        "beta" if (name, version) == ("tenant-a", "v2") else None
    )
    assert client.post("/admin/adapters", json={"path": "tenant-a/v2"}, headers=admin).is_success
    pinned = classify(client, ALPHA, adapter="tenant-a@v2")  # alpha may use every adapter...
    assert pinned.status_code == 403, pinned.text  # ...but not another tenant's version
    assert pinned.json()["error"]["code"] == "adapter_forbidden"
    absent = classify(client, ALPHA, adapter="tenant-a@v9")
    assert absent.status_code == 404  # a version no job made: not found, as before
    assert classify(client, ALPHA, adapter="tenant-a@v1").status_code == 200  # no job's
    client.app.state.services.chat.version_owner = lambda name, version: (
        "alpha" if (name, version) == ("tenant-a", "v2") else None
    )  # now alpha's: listed for alpha only
    ids = [m["id"] for m in client.get("/v1/models", headers=auth(ALPHA)).json()["data"]]
    assert "tenant-a@v2" in ids
    ids = [m["id"] for m in client.get("/v1/models", headers=auth(BETA)).json()["data"]]
    assert "tenant-a@v2" not in ids
    client.app.state.services.chat.version_owner = lambda name, version: (
        "beta" if (name, version) == ("tenant-a", "v2") else None
    )
    client.post("/admin/adapters/tenant-a/promote", json={"version": "v2"}, headers=admin)
    res = classify(client, ALPHA, adapter="tenant-a@v2")  # current now: everyone's
    assert res.status_code == 200 and res.headers["x-gateway-adapter-version"] == "v2"


def test_an_adapter_is_deleted_whole_with_the_admin_key(tenant_gateway) -> None:
    client, _, tmp_path = tenant_gateway
    admin = auth(ADMIN)
    assert client.delete("/admin/adapters/tenant-b", headers=auth(BETA)).status_code == 401
    res = client.delete("/admin/adapters/tenant-b", headers=admin)
    assert res.status_code == 200, res.text
    assert res.json() == {"deleted": "tenant-b", "versions": ["v1"]}
    assert not (tmp_path / "store" / "tenant-b" / "v1").exists()
    listed = client.get("/admin/adapters", headers=admin).json()["adapters"]
    assert [a["name"] for a in listed] == ["tenant-a"]
    res = classify(client, BETA)  # its default adapter is gone
    assert res.status_code == 404 and res.json()["error"]["code"] == "adapter_not_found"
    again = client.delete("/admin/adapters/tenant-b", headers=admin)
    assert again.status_code == 404
    assert client.delete("/admin/adapters/..%2Fx", headers=admin).status_code in (400, 404)
