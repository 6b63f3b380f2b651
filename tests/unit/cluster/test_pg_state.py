"""Shared state in a real PostgreSQL server: migrations and the version check, aliases
changed by two replicas at once, canaries, tenants, history, and an outage. The engine is
the test double; the database is real."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from gateway import errors
from gateway.cluster import db
from gateway.cluster.pg_state import PgRegistryState, VersionRecord, history, read_all
from gateway.cluster.pg_tenants import PgTenantDirectory
from gateway.registry.registry import AdapterRegistry
from gateway.registry.store import AdapterStore, AdapterVersion
from gateway.tenancy import Tenant, hash_key
from tests.adapter_factory import make_peft_folder
from tests.fake_engine import FakeEngine
from tests.servers.postgres_server import PostgresServer, postgres_server
from tests.unit.registry.test_store import LIMITS

_names = itertools.count()


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with postgres_server() as pg:
        yield pg


@pytest.fixture
def url(server: PostgresServer) -> str:
    """A fresh database, migrated, for each test."""
    url = server.create_database(f"t{next(_names)}")
    db.migrate(url)
    return url


@pytest.fixture
def store(tmp_path: Path) -> AdapterStore:
    for name, version in [("demo", "v1"), ("demo", "v2"), ("demo", "v3"), ("other", "v1")]:
        make_peft_folder(tmp_path / "store" / name / version)
    return AdapterStore(tmp_path / "store", LIMITS)


def replica(url: str, store: AdapterStore, name: str) -> AdapterRegistry:
    """One replica's registry; files are "published" by recording their digest (the object
    store itself is tested in tests/unit/registry/test_objects.py)."""
    state = PgRegistryState(url, name)
    registry = AdapterRegistry(store, state, FakeEngine(), 4)

    def publish(found: AdapterVersion) -> None:
        digest = hashlib.sha256((found.path / "adapter_model.safetensors").read_bytes())
        state.stage(VersionRecord(
            found.name, found.version, f"s3://b/adapters/{found.name}/{found.version}/adapter.tar",
            digest.hexdigest(), found.size_bytes, {"name": found.name},
        ))  # fmt: skip

    registry.publisher = publish
    return registry


async def sync(registry: AdapterRegistry, url: str) -> list[str]:
    shared = read_all(url)
    return await registry.adopt_shared(
        shared.aliases, shared.records, lambda r: registry.store.inspect(r.name, r.version)
    )


def test_the_schema_version_is_checked(server: PostgresServer) -> None:
    url = server.create_database(f"t{next(_names)}")
    with pytest.raises(db.SchemaMismatch, match="gateway state migrate"):
        db.check_schema(url)  # empty database
    assert db.migrate(url) == db.head_revision()
    assert db.check_schema(url) == db.head_revision()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0042'")
    with pytest.raises(db.SchemaMismatch, match=r"'0042'.*needs '0001'"):
        db.check_schema(url)


async def test_a_change_on_one_replica_reaches_the_other(url: str, store: AdapterStore) -> None:
    a, b = replica(url, store, "a"), replica(url, store, "b")
    await a.register("demo", "v1")
    await a.register("demo", "v2")
    assert await sync(b, url) == []
    assert b.current("demo").version == "v1"
    await a.promote("demo", "v2")
    await sync(b, url)
    assert b.current("demo").version == "v2"
    await b.rollback("demo")  # b's row version is current after its sync
    await sync(a, url)
    assert a.current("demo").version == "v1"
    actions = [(e["action"], e["current"], e["replica"]) for e in history(url, "demo")]
    assert actions == [
        ("rollback", "v1", "b"), ("promote", "v2", "a"), ("register", "v1", "a"),
        ("register", "v1", "a"),
    ]  # fmt: skip


async def test_two_admins_promoting_at_once_one_wins_the_other_gets_409(
    url: str, store: AdapterStore
) -> None:
    a, b = replica(url, store, "a"), replica(url, store, "b")
    for version in ("v1", "v2", "v3"):
        await a.register("demo", version)
    await sync(b, url)
    results = await asyncio.gather(
        a.promote("demo", "v2"), b.promote("demo", "v3"), return_exceptions=True
    )
    conflicts = [r for r in results if isinstance(r, errors.Conflict)]
    wins = [r for r in results if isinstance(r, dict)]
    assert len(conflicts) == 1 and len(wins) == 1, results
    assert conflicts[0].status_code == 409
    winner = wins[0]["current"]
    shared = read_all(url)
    assert shared.aliases["demo"].current == winner
    assert shared.aliases["demo"].history == ["v1"]  # the loser left no trace
    promotions = [e for e in history(url, "demo") if e["action"] == "promote"]
    assert [e["current"] for e in promotions] == [winner]
    for registry in (a, b):  # after a resync both serve the winner
        await sync(registry, url)
        assert registry.current("demo").version == winner


async def test_a_stale_replica_cannot_overwrite_a_newer_change(
    url: str, store: AdapterStore
) -> None:
    a, b = replica(url, store, "a"), replica(url, store, "b")
    await a.register("demo", "v1")
    await a.register("demo", "v2")
    await sync(b, url)
    await a.promote("demo", "v2")  # b has not heard of it
    with pytest.raises(errors.Conflict, match="another replica"):
        await b.set_canary("demo", "v2", 0.1)  # valid on b's stale view
    assert read_all(url).aliases["demo"].current == "v2"


async def test_the_same_version_registered_on_two_replicas_is_one_row(
    url: str, store: AdapterStore
) -> None:
    a, b = replica(url, store, "a"), replica(url, store, "b")
    await a.register("demo", "v1")
    with pytest.raises(errors.Conflict):
        await b.register("demo", "v1")  # b had not synced: the row exists
    await sync(b, url)
    assert b.current("demo").version == "v1"


async def test_a_canary_takes_its_weight_and_promotion_ends_it(
    url: str, store: AdapterStore
) -> None:
    a, b = replica(url, store, "a"), replica(url, store, "b")
    await a.register("demo", "v1")
    await a.register("demo", "v2")
    await a.set_canary("demo", "v2", 0.25)
    await sync(b, url)
    coins = iter([0.1, 0.3, 0.24, 0.9])
    b.pick = lambda: next(coins)
    assert [b.current("demo").version for _ in range(4)] == ["v2", "v1", "v2", "v1"]
    with pytest.raises(errors.Conflict):
        await a.delete("demo", "v2")  # the canary is in use
    with pytest.raises(errors.InvalidRequest):
        await a.set_canary("demo", "v2", 1.0)
    await b.promote("demo", "v2")
    await sync(a, url)
    alias = a.state.aliases["demo"]
    assert (alias.current, alias.canary, alias.canary_weight) == ("v2", None, 0.0)
    assert [e["action"] for e in history(url, "demo")][:2] == ["promote", "canary"]


async def test_a_version_that_fails_to_materialize_is_never_served(
    url: str, store: AdapterStore
) -> None:
    a, b = replica(url, store, "a"), replica(url, store, "b")
    await a.register("demo", "v1")
    await sync(b, url)
    await a.register("demo", "v2")
    await a.promote("demo", "v2")

    def tampered(record: VersionRecord) -> AdapterVersion:
        if record.version == "v2":
            raise errors.AdapterIntegrityFailed("demo/v2: the object's SHA-256 differs")
        return store.inspect(record.name, record.version)

    shared = read_all(url)
    problems = await b.adopt_shared(shared.aliases, shared.records, tampered)
    assert problems == ["demo/v2: demo/v2: the object's SHA-256 differs"]
    assert b.current("demo").version == "v1"  # keeps serving what it had
    assert not b.is_registered("demo", "v2")


async def test_a_deleted_version_is_forgotten_by_the_other_replica(
    url: str, store: AdapterStore
) -> None:
    a, b = replica(url, store, "a"), replica(url, store, "b")
    await a.register("other", "v1")
    await a.register("demo", "v1")
    await sync(b, url)
    (store.root / "other" / "v1" / "keep").write_text("x")  # a's delete must not hit b's files
    await a.delete_adapter("other")
    await sync(b, url)
    assert "other" not in b.names()
    with pytest.raises(errors.AdapterNotFound):
        b.current("other")


async def test_changes_are_refused_while_the_database_is_down(
    store: AdapterStore, tmp_path: Path
) -> None:
    with postgres_server() as pg:
        url = pg.create_database("outage")
        db.migrate(url)
        a = replica(url, store, "a")
        await a.register("demo", "v1")
        await a.register("demo", "v2")
        pg.stop()
        assert a.current("demo").version == "v1"  # reads come from memory
        with pytest.raises(errors.StateUnavailable):
            await a.promote("demo", "v2")
        assert a.current("demo").version == "v1"  # nothing changed
        pg.start()
        await a.promote("demo", "v2")
        assert read_all(url).aliases["demo"].current == "v2"


def _tenant(name: str, *keys: str, rpm: float | None = None) -> Tenant:
    return Tenant(name=name, key_hashes=[hash_key(k) for k in keys], requests_per_minute=rpm)


def test_tenants_live_in_postgres_and_keys_only_as_hashes(url: str) -> None:
    a, b = PgTenantDirectory(url, None), PgTenantDirectory(url, None)
    a.upsert(_tenant("acme", "acme-key-0123456789", rpm=60))
    b.adopt_rows(read_all(url).tenants)
    assert b.authenticate("acme-key-0123456789").requests_per_minute == 60
    key_a, key_b = a.issue_key("acme"), None
    b.adopt_rows(read_all(url).tenants)
    key_b = b.issue_key("acme")  # b has heard of key_a: both stay
    a.adopt_rows(read_all(url).tenants)
    for key in (key_a, key_b, "acme-key-0123456789"):
        assert a.authenticate(key).name == "acme"
    with psycopg.connect(url) as conn:
        stored = [r[0] for r in conn.execute("SELECT key_hash FROM tenant_keys")]
        settings = conn.execute("SELECT settings::text FROM tenants").fetchone()[0]
    assert all(h.startswith("sha256:") for h in stored) and len(stored) == 3
    assert key_a not in settings and "sha256" not in settings
    with pytest.raises(errors.Conflict):
        b.upsert(_tenant("other", "acme-key-0123456789"))  # a key of another tenant
    assert a.delete("acme")
    b.adopt_rows(read_all(url).tenants)
    with pytest.raises(errors.Unauthorized):
        b.authenticate(key_a)
