"""Shared mode assembled (Postgres + moto's S3 server, engine test double): a version
registered on one replica reaches another through object storage, and an object whose
bytes do not match its record is refused, counted and never served."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from gateway import errors
from gateway.cluster import db
from gateway.cluster import shared as shared_module
from gateway.cluster.pg_state import read_all
from gateway.cluster.pg_tenants import PgTenantDirectory
from gateway.cluster.shared import SharedMode
from gateway.config import Settings
from gateway.observability.metrics import GatewayMetrics
from gateway.registry.registry import AdapterRegistry
from gateway.registry.store import AdapterStore
from tests.adapter_factory import make_peft_folder
from tests.fake_engine import FakeEngine
from tests.servers.postgres_server import PostgresServer, postgres_server
from tests.servers.s3_server import S3Server, s3_server
from tests.unit.registry.test_store import LIMITS

_names = itertools.count()


def bucket(url: str) -> str:
    """One bucket per test database: versions are immutable, so tests must not share."""
    return "shared-mode-" + url.rsplit("/", 1)[1]


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@pytest.fixture
def url(pg: PostgresServer, s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in (("AWS_ACCESS_KEY_ID", s3.access_key),
                        ("AWS_SECRET_ACCESS_KEY", s3.secret_key)):  # fmt: skip
        monkeypatch.setenv(name, value)
    url = pg.create_database(f"shared{next(_names)}")
    db.migrate(url)
    return url


def replica(root: Path, name: str, url: str, s3: S3Server, **adapters: str) -> SharedMode:
    settings = Settings(
        adapter_store=root, state_backend="postgres", state_database_url=url,
        object_store_url=f"s3://{bucket(url)}/adapters", object_store_endpoint=s3.endpoint_url,
        adapters=adapters, replica_id=name, state_resync_s=600,
    )  # fmt: skip
    state, _ = SharedMode.build_state(settings)
    registry = AdapterRegistry(AdapterStore(root, LIMITS), state, FakeEngine(), 4)
    return SharedMode(settings, registry, PgTenantDirectory(url, None), GatewayMetrics())


async def test_versions_travel_through_object_storage_and_tampering_is_refused(
    url: str, s3: S3Server, tmp_path: Path
) -> None:
    for version in ("v1", "v2", "v3"):
        make_peft_folder(
            tmp_path / "a" / "demo" / version, rank={"v1": 8, "v2": 4, "v3": 2}[version]
        )
    a = replica(tmp_path / "a", "a", url, s3, demo="v1")
    b = replica(tmp_path / "b", "b", url, s3)
    await a.start()  # seeds demo/v1: object first, then the row
    await b.start()  # b's store is empty: it downloads and verifies
    try:
        assert b.registry.current("demo").rank == 8
        assert (tmp_path / "b" / "demo" / "v1" / ".sha256").is_file()
        await a.registry.register("demo", "v2")
        await b.resync()
        assert b.registry.version("demo", "v2").rank == 4

        await b.follower.stop()  # b must not fetch v3 before it is tampered with
        await a.registry.register("demo", "v3")
        await a.registry.promote("demo", "v3")
        client = boto3.client(
            "s3", endpoint_url=s3.endpoint_url, region_name=s3.region,
            aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key,
        )  # fmt: skip
        v1 = client.get_object(Bucket=bucket(url), Key="adapters/demo/v1/adapter.tar")[
            "Body"
        ].read()
        client.put_object(
            Bucket=bucket(url), Key="adapters/demo/v3/adapter.tar", Body=v1
        )  # tampered
        await b.resync()
        assert b.registry.current("demo").version == "v1"  # never served the tampered v3
        assert not b.registry.is_registered("demo", "v3")
        assert not (tmp_path / "b" / "demo" / "v3").exists()
        assert b.problems and "demo/v3" in b.problems[0]
        await b.resync()  # refused once: not downloaded and counted again at each resync
        assert b.problems and "demo/v3" in b.problems[0]
        assert b.metrics.adapter_integrity_failures._value.get() == 1
        with pytest.raises(errors.AdapterNotFound):
            b.registry.version("demo", "v3")
        assert a.registry.current("demo").version == "v3"  # a's own files are unaffected
    finally:
        await a.stop()
        await b.stop()


async def test_a_replica_of_another_schema_version_refuses_to_start(
    pg: PostgresServer, s3: S3Server, tmp_path: Path
) -> None:
    url = pg.create_database(f"old{next(_names)}")
    with pytest.raises(db.SchemaMismatch, match="gateway state migrate"):
        replica(tmp_path / "a", "a", url, s3)


async def test_a_resync_that_read_before_a_local_change_does_not_undo_it(
    url: str, s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resync reads a snapshot, and the replica's own promotion commits before the
    resync adopts it: the older snapshot must not put the old version back."""
    for version in ("v1", "v2"):
        make_peft_folder(tmp_path / "a" / "demo" / version)
    a = replica(tmp_path / "a", "a", url, s3, demo="v1")
    await a.start()
    await a.follower.stop()  # resyncs happen only when this test calls them
    try:
        await a.registry.register("demo", "v2")
        stale = read_all(url)  # read before the promotion...
        await a.registry.promote("demo", "v2")  # ...which commits before it is adopted
        monkeypatch.setattr(shared_module, "read_all", lambda _url: stale)
        await a.resync()
        assert a.registry.current("demo").version == "v2"
        monkeypatch.undo()
        await a.resync()
        assert a.registry.current("demo").version == "v2"
    finally:
        await a.stop()
