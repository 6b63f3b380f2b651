"""Hostile input to the admin API in tenants mode: every refusal is a 4xx with a short,
escaped reason, and a refused call changes nothing on disk."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from tests.adapter_factory import make_peft_folder
from tests.unit.tenancy_setup import ADMIN, ALPHA, auth

HOSTILE = {
    "newline": "v3\n",
    "crlf": "a\r\nb",
    "bidi": "a\u202eb",
    "lone surrogate": "\ud800",
    "nul": "a\x00b",
    "long": "n" * 5000,
    "non-BMP": "\U0001d518",
}
# (method, path, body): "{v}" becomes the hostile value, escaped for where it goes.
ROUTES = [
    ("POST", "/admin/adapters/upload?name={v}&version=v1", "archive"),
    ("POST", "/admin/adapters/upload?name=demo&version={v}", "archive"),
    ("POST", "/admin/adapters", {"path": "{v}/v1"}),
    ("POST", "/admin/adapters", {"path": "tenant-a/{v}"}),
    ("POST", "/admin/adapters/{v}/promote", {"version": "v1"}),
    ("POST", "/admin/adapters/tenant-a/promote", {"version": "{v}"}),
    ("POST", "/admin/adapters/{v}/rollback", None),
    ("POST", "/admin/adapters/{v}/canary", {"version": "v1", "weight": 0.1}),
    ("POST", "/admin/adapters/tenant-a/canary", {"version": "{v}", "weight": 0.1}),
    ("DELETE", "/admin/adapters/{v}/canary", None),
    ("GET", "/admin/adapters/{v}/history", None),
    ("POST", "/admin/adapters/{v}/load", None),
    ("POST", "/admin/adapters/tenant-a/load", {"version": "{v}"}),
    ("POST", "/admin/adapters/tenant-a/unload", {"version": "{v}"}),
    ("DELETE", "/admin/adapters/{v}/v1", None),
    ("DELETE", "/admin/adapters/tenant-a/{v}", None),
    ("PUT", "/admin/tenants/{v}", {}),
    ("PUT", "/admin/tenants/delta", {"allowed_adapters": ["{v}"]}),
    ("PUT", "/admin/tenants/delta", {"allowed_adapters": ["*"], "default_adapter": "{v}"}),
    ("PUT", "/admin/tenants/delta", {"default_schema": "{v}"}),
    ("PUT", "/admin/tenants/delta", {"escalation": {"{v}": {"threshold": 0.5}}}),
    ("POST", "/admin/tenants/{v}/keys", None),
    ("DELETE", "/admin/tenants/{v}", None),
]


def _archive(tmp_path: Path, extra: list[tuple[str, bytes]] = ()) -> bytes:
    folder = make_peft_folder(tmp_path / "src" / "x" / "v1")
    files = [(p.name, p.read_bytes()) for p in sorted(folder.iterdir())] + list(extra)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _state(tmp_path: Path) -> dict[str, bytes | None]:
    """Every file and folder of the store and the tenants file, with their contents."""
    found: dict[str, bytes | None] = {"tenants.yaml": (tmp_path / "tenants.yaml").read_bytes()}
    for path in sorted((tmp_path / "store").rglob("*")):
        found[str(path.relative_to(tmp_path))] = path.read_bytes() if path.is_file() else None
    return found


def _fill(template: Any, value: str) -> Any:
    if isinstance(template, str):
        return template.replace("{v}", value)
    if isinstance(template, list):
        return [_fill(item, value) for item in template]
    if isinstance(template, dict):
        return {_fill(key, value): _fill(item, value) for key, item in template.items()}
    return template


def _send(client: TestClient, method: str, path: str, body: Any, value: str, archive: bytes):
    url = path.replace("{v}", quote(value, safe="", errors="surrogatepass"))
    headers = auth(ADMIN)
    if body == "archive":
        content = archive
    elif body is None:
        content = b""
    else:  # ASCII JSON: a lone surrogate travels as the escape "\ud800", as a client sends it
        content = json.dumps(_fill(body, value)).encode()
        headers = {**headers, "Content-Type": "application/json"}
    return client.request(method, url, content=content, headers=headers)


def _assert_refused_briefly(res: Response) -> None:
    assert 400 <= res.status_code < 500, res.text[:300]
    message = res.json()["error"]["message"]
    assert len(res.content) < 1000  # a short excerpt, never the whole value
    assert not any(c in message for c in "\n\r\x00\u202e"), message


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_hostile_names_are_refused_briefly_and_change_nothing(
    tenant_gateway, method: str, path: str, body: Any
) -> None:
    client, _, tmp_path = tenant_gateway
    archive = _archive(tmp_path / "archive")
    before = _state(tmp_path)
    for value in HOSTILE.values():
        res = _send(client, method, path, body, value, archive)
        _assert_refused_briefly(res)
    assert _state(tmp_path) == before


def test_a_version_with_a_trailing_newline_writes_nothing(tenant_gateway) -> None:
    client, _, tmp_path = tenant_gateway
    before = _state(tmp_path)
    res = client.post(
        "/admin/adapters/upload?name=demo&version=v3%0A",
        content=_archive(tmp_path / "archive"),
        headers=auth(ADMIN),
    )
    assert res.status_code == 400 and res.json()["error"]["param"] == "version"
    assert _state(tmp_path) == before
    names = [
        a["name"] for a in client.get("/admin/adapters", headers=auth(ADMIN)).json()["adapters"]
    ]
    assert "demo" not in names


@pytest.mark.parametrize(
    "query", ["name=registry.json&version=v1", "name=tenant-a&version=registry.json"]
)
def test_the_registry_file_name_is_reserved(tenant_gateway, query: str) -> None:
    client, _, tmp_path = tenant_gateway
    assert (tmp_path / "store" / "registry.json").is_file()  # the registry lives in the store
    before = _state(tmp_path)
    res = client.post(
        f"/admin/adapters/upload?{query}",
        content=_archive(tmp_path / "archive"),
        headers=auth(ADMIN),
    )
    assert res.status_code == 400, res.text
    assert res.json()["error"]["code"] == "adapter_invalid"
    assert "reserved" in res.json()["error"]["message"]
    assert _state(tmp_path) == before
    res = client.post("/admin/adapters", json={"path": "registry.json/v1"}, headers=auth(ADMIN))
    assert res.status_code == 400 and "reserved" in res.json()["error"]["message"]
    registered = client.post("/admin/adapters", json={"path": "tenant-a/v2"}, headers=auth(ADMIN))
    assert registered.status_code == 200  # the registry file still takes writes


@pytest.mark.parametrize("cut", ["half", "garbage", "bad member"])
def test_a_refused_upload_under_a_new_name_leaves_nothing(tenant_gateway, cut: str) -> None:
    client, _, tmp_path = tenant_gateway
    good = _archive(tmp_path / "archive")
    body = {
        "half": good[: len(good) // 2],
        "garbage": gzip.compress(b"garbage" * 1000),
        "bad member": _archive(tmp_path / "other", [("note\n", b"x")]),
    }[cut]
    before = _state(tmp_path)
    res = client.post(
        "/admin/adapters/upload?name=fresh&version=v1", content=body, headers=auth(ADMIN)
    )
    assert res.status_code == 400, res.text
    assert res.json()["error"]["code"] == "adapter_invalid"
    assert _state(tmp_path) == before


@pytest.mark.parametrize("field", ["requests_per_minute", "tokens_per_minute"])
def test_an_infinite_rate_is_refused_not_stored(tenant_gateway, field: str) -> None:
    client, _, tmp_path = tenant_gateway
    before = _state(tmp_path)
    body = f'{{"allowed_adapters": ["*"], "{field}": 1e999}}'.encode()  # JSON for infinity
    headers = {**auth(ADMIN), "Content-Type": "application/json"}
    res = client.put("/admin/tenants/delta", content=body, headers=headers)
    assert res.status_code == 400 and res.json()["error"]["param"] == field
    assert _state(tmp_path) == before


@pytest.mark.parametrize("key", [None, "not-the-admin-key-0123456789", "tenant"])
def test_the_admin_key_is_checked_before_the_body_is_read(tenant_gateway, key: str | None) -> None:
    client, _, _ = tenant_gateway
    headers = {} if key is None else auth(ALPHA if key == "tenant" else key)
    for path in ("/admin/adapters", "/admin/adapters/upload?name=demo&version=v9"):
        res = client.post(path, content=b'{"path": ', headers=headers)
        assert res.status_code == 401, res.text
        assert res.json()["error"]["code"] == "invalid_api_key"
    res = client.post("/admin/adapters", content=b'{"path": ', headers=auth(ADMIN))
    assert res.status_code == 400 and res.json()["error"]["code"] == "invalid_request"
