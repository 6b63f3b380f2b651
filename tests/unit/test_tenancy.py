"""Keys, the tenants file and per-tenant limits, with a fake clock (no sleeping)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from gateway import errors
from gateway.tenancy import Limiter, Tenant, TenantDirectory, generate_key, hash_key, key_matches

ADMIN = hash_key("admin-secret-0123456789")


def tenant(name: str = "acme", key: str = "k-acme", **limits: object) -> Tenant:
    return Tenant(name=name, key_hashes=[hash_key(key)], allowed_adapters=["a"], **limits)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_keys_hash_and_match() -> None:
    key = generate_key()
    assert key.startswith("gw-") and len(key) > 40
    assert hash_key(key).startswith("sha256:") and key not in hash_key(key)
    assert key_matches(key, hash_key(key)) and not key_matches(key + "x", hash_key(key))


def _write(path: Path, *tenants: Tenant) -> Path:
    path.write_text(yaml.safe_dump({"tenants": [t.model_dump() for t in tenants]}))
    return path


def test_authenticate(tmp_path: Path) -> None:
    directory = TenantDirectory.load(_write(tmp_path / "t.yaml", tenant()), ADMIN)
    assert directory.authenticate("k-acme").name == "acme"
    for key, message in [(None, "missing"), ("", "missing"), ("nope", "invalid")]:
        with pytest.raises(errors.Unauthorized, match=message):
            directory.authenticate(key)
    with pytest.raises(errors.Unauthorized):
        directory.authenticate("admin-secret-0123456789")


@pytest.mark.parametrize(
    ("tenants", "message"),
    [
        ([tenant(), tenant(key="other")], "defined twice"),
        ([tenant(), tenant(name="b")], "share a key"),
        ([tenant(key="admin-secret-0123456789")], "admin key"),
    ],
)
def test_load_refuses_unsafe_files(tmp_path: Path, tenants: list[Tenant], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TenantDirectory.load(_write(tmp_path / "t.yaml", *tenants), ADMIN)


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "x", "key_hashes": ["plain-key"]},
        {"name": "x", "key_hashes": [hash_key("k")], "default_adapter": "b"},
        {"name": "../x", "key_hashes": [hash_key("k")]},
        {"name": "x", "key_hashes": [hash_key("k")], "surprise": 1},
    ],
)
def test_load_refuses_bad_entries(tmp_path: Path, entry: dict) -> None:
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"tenants": [entry]}))
    with pytest.raises(ValueError):
        TenantDirectory.load(tmp_path / "t.yaml", ADMIN)
    with pytest.raises(ValueError, match="does not exist"):
        TenantDirectory.load(tmp_path / "missing.yaml", ADMIN)


def test_changes_persist_and_reload(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.yaml", tenant())
    directory = TenantDirectory.load(path, ADMIN)
    directory.upsert(tenant("beta", "k-beta", max_concurrency=2))
    key = directory.issue_key("acme")
    assert directory.delete("nobody") is False
    again = TenantDirectory.load(path, ADMIN)
    assert {t.name for t in again.all()} == {"acme", "beta"}
    assert again.authenticate(key).name == "acme" and again.authenticate("k-acme").name == "acme"
    assert key not in path.read_text()
    assert again.get("beta") is not None and again.get("beta").max_concurrency == 2
    assert directory.delete("beta") and TenantDirectory.load(path, ADMIN).get("beta") is None


def test_a_failed_write_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "t.yaml", tenant())
    before = path.read_text()
    directory = TenantDirectory.load(path, ADMIN)

    def broken_replace(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        directory.upsert(tenant("beta", "k-beta"))
    assert directory.get("beta") is None and path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.yaml"]  # no temp file left
    with pytest.raises(errors.Conflict):  # a key clash is refused, nothing written
        monkeypatch.undo()
        directory.upsert(tenant("beta", "k-acme"))
    assert path.read_text() == before


def test_concurrency_cap_and_release() -> None:
    limiter = Limiter(Clock())
    acme = tenant(max_concurrency=2)
    first, second = limiter.admit(acme, 10), limiter.admit(acme, 10)
    with pytest.raises(errors.RateLimited) as refused:
        limiter.admit(acme, 10)
    assert refused.value.retry_after >= 1
    first.release()
    first.release()  # idempotent
    assert limiter.in_flight("acme") == 1
    limiter.admit(acme, 10)
    second.release()
    assert limiter.rejections == {("acme", "concurrency"): 1}


def test_request_rate_refills_with_time() -> None:
    clock = Clock()
    limiter = Limiter(clock)
    acme = tenant(requests_per_minute=3)
    for _ in range(3):
        limiter.admit(acme, 1).release()
    with pytest.raises(errors.RateLimited) as refused:
        limiter.admit(acme, 1)
    assert refused.value.retry_after == 20  # one request per 20 s
    clock.now += 20
    limiter.admit(acme, 1).release()
    other = tenant("beta", "k-beta", requests_per_minute=3)
    limiter.admit(other, 1)  # tenants do not share buckets


def test_tokens_are_reserved_refunded_and_refusals_cost_nothing() -> None:
    clock = Clock()
    limiter = Limiter(clock)
    acme = tenant(tokens_per_minute=1000, requests_per_minute=100)
    lease = limiter.admit(acme, 800)
    with pytest.raises(errors.RateLimited):
        limiter.admit(acme, 300)  # 200 left
    lease.release(actual_tokens=100)  # 700 come back
    limiter.admit(acme, 800)  # 900 available now
    with pytest.raises(errors.InvalidRequest, match="at most 1000"):
        limiter.admit(acme, 5000)  # waiting would never help
    assert limiter.rejections == {("acme", "tokens"): 1}
    assert limiter._requests["acme"].level == pytest.approx(98)  # the refusal took no request
