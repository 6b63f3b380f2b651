"""Keys, the tenants file and per-tenant limits, with a fake clock (no sleeping)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from gateway import errors
from gateway.tenancy import Limiter, Tenant, TenantDirectory, generate_key, hash_key, key_matches
from gateway.tenancy.keys import fingerprint
from gateway.tenancy.limits import Bucket

ADMIN_KEY = "admin-secret-0123456789"
ADMIN = hash_key(ADMIN_KEY)


def tenant(name: str = "acme", key: str = "k-acme", **limits: object) -> Tenant:
    return Tenant(name=name, key_hashes=[hash_key(key)], allowed_adapters=["a"], **limits)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _write(path: Path, *tenants: Tenant) -> Path:
    path.write_text(yaml.safe_dump({"tenants": [t.model_dump() for t in tenants]}))
    return path


def test_keys_hash_match_and_fingerprint() -> None:
    key = generate_key()
    assert key.startswith("gw-") and len(key) == 3 + 43 and generate_key() != key
    assert hash_key("abc") == (
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert key_matches(key, hash_key(key)) and not key_matches(key + "x", hash_key(key))
    assert fingerprint(hash_key("abc")) == "ba7816bf"


def test_tenant_fields_are_checked() -> None:
    for bad in ["plain-key", "sha256:" + "A" * 64, "sha256:" + "a" * 64 + "\n"]:
        with pytest.raises(ValueError, match="sha256"):
            Tenant(name="x", key_hashes=[bad])
    for fields in [{"key_hashes": []}, {"name": "acme\n"}, {"max_concurrency": 0}]:
        with pytest.raises(ValueError):
            Tenant(**{"name": "x", "key_hashes": [hash_key("k")], **fields})
    base_only = Tenant(name="x", key_hashes=[hash_key("k")])
    assert base_only.may_use(None) and not base_only.may_use("a")
    assert tenant().may_use("a") and not tenant().may_use("b")
    everything = Tenant(name="x", key_hashes=[hash_key("k")], allowed_adapters=["*"])
    assert everything.may_use("b") and everything.model_copy().default_adapter is None
    assert Tenant(name="x", key_hashes=[hash_key("k")], allowed_adapters=["*"], default_adapter="z")


def test_authenticate(tmp_path: Path) -> None:
    directory = TenantDirectory.load(_write(tmp_path / "t.yaml", tenant()), ADMIN)
    assert directory.authenticate("k-acme").name == "acme"
    for key, message in [(None, "missing API key"), ("", "missing API key"), ("nope", "invalid")]:
        with pytest.raises(errors.Unauthorized, match=message) as refused:
            directory.authenticate(key)
        assert "nope" not in refused.value.message
    with pytest.raises(errors.Unauthorized, match="invalid API key"):
        directory.authenticate(ADMIN_KEY)
    with pytest.raises(errors.Unauthorized):
        TenantDirectory.load(None, ADMIN).authenticate("k-acme")


@pytest.mark.parametrize(
    ("tenants", "message"),
    [
        ([tenant(), tenant(key="other")], "defined twice"),
        ([tenant(), tenant(name="b")], "share a key"),
        ([tenant(key=ADMIN_KEY)], "the admin key cannot be a tenant key"),
        ([tenant().model_copy(update={"key_hashes": [hash_key("k")] * 2})], "same key twice"),
    ],
)
def test_load_refuses_unsafe_files(tmp_path: Path, tenants: list[Tenant], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TenantDirectory.load(_write(tmp_path / "t.yaml", *tenants), ADMIN)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (yaml.safe_dump({"tenants": [{"name": "x", "key_hashes": ["plain-key"]}]}), "sha256"),
        (
            yaml.safe_dump(
                {"tenants": [{"name": "x", "key_hashes": [hash_key("k")], "default_adapter": "b"}]}
            ),
            "not in allowed_adapters",
        ),
        (yaml.safe_dump({"tenants": [{"name": "../x", "key_hashes": [hash_key("k")]}]}), "pattern"),
        (
            yaml.safe_dump({"tenants": [{"name": "x", "key_hashes": [hash_key("k")], "y": 1}]}),
            "Extra",
        ),
        ("tenants: [unclosed", "not valid YAML"),
        ("- just a list", "'tenants' list"),
        ("tenants: {a: 1}", "'tenants' list"),
    ],
)
def test_load_refuses_bad_entries(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "t.yaml").write_text(text)
    with pytest.raises(ValueError, match=message):
        TenantDirectory.load(tmp_path / "t.yaml", ADMIN)


def test_load_edge_cases(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        TenantDirectory.load(tmp_path / "missing.yaml", ADMIN)
    (tmp_path / "empty.yaml").write_text("tenants:\n")
    assert TenantDirectory.load(tmp_path / "empty.yaml", ADMIN).all() == []
    memory = TenantDirectory.load(None, ADMIN)
    memory.upsert(tenant())
    assert memory.authenticate(memory.issue_key("acme")).name == "acme"
    assert [p.name for p in tmp_path.iterdir()] == ["empty.yaml"]  # nothing written


def test_changes_persist_and_reload(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.yaml", tenant(), tenant("beta", "k-beta"))
    directory = TenantDirectory.load(path, ADMIN)
    directory.upsert(tenant("gamma", "k-gamma"))
    directory.upsert(tenant("acme", "k-acme", max_concurrency=2))  # update keeps its place
    key = directory.issue_key("beta")
    assert directory.delete("nobody") is False
    entries = yaml.safe_load(path.read_text())["tenants"]
    assert [e["name"] for e in entries] == ["acme", "beta", "gamma"]
    assert list(entries[0])[:2] == ["name", "key_hashes"] and "default_adapter" not in entries[0]
    assert key not in path.read_text() and hash_key(key) in path.read_text()
    again = TenantDirectory.load(path, ADMIN)
    assert again.all() == directory.all()
    assert again.authenticate(key).name == "beta" and again.authenticate("k-beta").name == "beta"
    assert again.get("acme") == tenant("acme", "k-acme", max_concurrency=2)
    assert directory.delete("beta") is True
    assert TenantDirectory.load(path, ADMIN).get("beta") is None
    with pytest.raises(errors.Unauthorized):
        directory.authenticate(key)
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    with pytest.raises(errors.InvalidRequest, match="no tenant"):
        directory.issue_key("beta")


def test_a_failed_write_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "t.yaml", tenant())
    before = path.read_text()
    directory = TenantDirectory.load(path, ADMIN)
    state = directory.all()

    def broken_replace(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        directory.upsert(tenant("beta", "k-beta"))
    with pytest.raises(OSError, match="disk full"):
        directory.delete("acme")
    with pytest.raises(OSError, match="disk full"):
        directory.issue_key("acme")
    assert directory.all() == state and directory.get("beta") is None
    assert directory.get("acme") is not None and len(directory.get("acme").key_hashes) == 1
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.yaml"]  # no temp file left


def test_a_clash_is_a_conflict_and_writes_nothing(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.yaml", tenant())
    before = path.read_text()
    directory = TenantDirectory.load(path, ADMIN)
    for clash in [tenant("beta", "k-acme"), tenant("beta", ADMIN_KEY)]:
        with pytest.raises(errors.Conflict):
            directory.upsert(clash)
    assert directory.get("beta") is None and path.read_text() == before


def test_bucket_take_charges_only_when_granted() -> None:
    clock = Clock()
    bucket = Bucket(60, clock=clock)  # one per second, a minute's worth of capacity
    assert bucket.capacity == 60 and bucket.take(50) == 0.0
    assert bucket.take(20) == pytest.approx(10.0) and bucket.level == pytest.approx(10)
    clock.now += 10
    assert bucket.take(20) == 0.0 and bucket.level == pytest.approx(0)
    bucket.give_back(1000)
    assert bucket.level == 60  # never above capacity
    assert Bucket(60, 5, clock).take(6) > 0


def test_concurrency_cap_and_release() -> None:
    limiter = Limiter(Clock())
    acme = tenant(max_concurrency=2, requests_per_minute=100)
    first, second = limiter.admit(acme, 10), limiter.admit(acme, 10)
    with pytest.raises(errors.RateLimited, match="has 2 requests running") as refused:
        limiter.admit(acme, 10)
    assert refused.value.retry_after == 1
    assert limiter._requests["acme"].level == pytest.approx(98)  # the refusal took no request
    first.release()
    first.release()  # idempotent
    assert limiter.in_flight("acme") == 1
    with limiter.admit(acme, 10):
        assert limiter.in_flight("acme") == 2
    second.release()
    assert limiter.in_flight("acme") == 0
    assert limiter.rejections == {("acme", "concurrency"): 1}


def test_request_rate_refills_with_time() -> None:
    clock = Clock()
    limiter = Limiter(clock)
    acme = tenant(requests_per_minute=3)
    for _ in range(3):
        limiter.admit(acme, 1).release()
    with pytest.raises(errors.RateLimited, match="3 requests per minute") as refused:
        limiter.admit(acme, 1)
    assert refused.value.retry_after == 20  # one request per 20 s
    clock.now += 19
    with pytest.raises(errors.RateLimited) as refused:
        limiter.admit(acme, 1)
    assert refused.value.retry_after == 1
    clock.now += 1
    limiter.admit(acme, 1).release()
    limiter.admit(tenant("beta", "k-beta", requests_per_minute=3), 1)  # buckets are per tenant
    assert limiter.rejections == {("acme", "requests"): 2}
    slow = tenant("slow", "k-slow", requests_per_minute=0.5)  # under one a minute still admits
    limiter.admit(slow, 1).release()
    with pytest.raises(errors.RateLimited) as refused:
        limiter.admit(slow, 1)
    assert refused.value.retry_after == 120


def test_retry_after_is_honoured_despite_float_rounding() -> None:
    clock = Clock()
    clock.now = 0.3  # from here, 2 s of refill at 30/min sums to a hair under one request
    limiter = Limiter(clock)
    fast = tenant(requests_per_minute=30)
    for _ in range(30):
        limiter.admit(fast, 1).release()
    with pytest.raises(errors.RateLimited) as refused:
        limiter.admit(fast, 1)
    assert refused.value.retry_after == 2
    clock.now += refused.value.retry_after
    limiter.admit(fast, 1)


def test_tokens_are_reserved_refunded_and_refusals_cost_nothing() -> None:
    limiter = Limiter(Clock())
    acme = tenant(tokens_per_minute=1000, requests_per_minute=100)
    lease = limiter.admit(acme, 800)
    with pytest.raises(errors.RateLimited, match="1000 tokens per minute") as refused:
        limiter.admit(acme, 300)  # 200 left: 100 short at 1000/60 per second
    assert refused.value.retry_after == 6
    lease.release(actual_tokens=100)  # 700 come back
    assert limiter._tokens["acme"].level == pytest.approx(900)
    limiter.admit(acme, 800).release(actual_tokens=900)  # used more: no refund, no charge
    assert limiter._tokens["acme"].level == pytest.approx(100)
    with pytest.raises(errors.InvalidRequest, match=r"needs 5000 tokens.*at most 1000"):
        limiter.admit(acme, 5000)  # waiting would never help
    assert limiter.rejections == {("acme", "tokens"): 1}
    assert limiter._requests["acme"].level == pytest.approx(98)  # refusals took no request
    assert limiter.in_flight("acme") == 0
