"""Shared mode, assembled: Postgres state, object-stored adapter files, the follower.

Start-up refuses a database whose schema version differs from this code's, then adopts
the shared state before the replica says it is ready, so a new replica serves the same
aliases as the others from its first request. Afterwards every notification, and the
periodic resync, replaces tenants and aliases whole; requests never wait on Postgres.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from typing import Any
from urllib.parse import urlparse

import psycopg

from gateway import errors
from gateway.cluster import db
from gateway.cluster.pg_state import PgRegistryState, VersionRecord, history, read_all
from gateway.cluster.pg_tenants import PgTenantDirectory
from gateway.cluster.sync import StateFollower
from gateway.config import Settings
from gateway.observability.metrics import GatewayMetrics
from gateway.registry.objects import LocalCache, ObjectStore, StoredObject, write_marker
from gateway.registry.registry import AdapterRegistry
from gateway.registry.store import AdapterVersion

log = logging.getLogger(__name__)


def replica_name(settings: Settings) -> str:
    return settings.replica_id or f"{socket.gethostname()}-{os.getpid()}"


def object_store(settings: Settings) -> ObjectStore:
    parsed = urlparse(settings.object_store_url or "")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return ObjectStore(
        parsed.netloc, prefix=parsed.path.strip("/") or "adapters",
        endpoint_url=settings.object_store_endpoint, region=region,
    )  # fmt: skip


class SharedMode:
    def __init__(
        self, settings: Settings, registry: AdapterRegistry, tenants: PgTenantDirectory,
        metrics: GatewayMetrics,
    ) -> None:  # fmt: skip
        assert isinstance(registry.state, PgRegistryState)
        self.settings = settings
        self.url = settings.state_database_url.get_secret_value()  # type: ignore[union-attr]
        self.registry = registry
        self.state: PgRegistryState = registry.state
        self.tenants = tenants
        self.metrics = metrics
        self.objects = object_store(settings)
        bound = settings.adapter_cache_max_bytes
        self.cache = LocalCache(registry.store, bound) if bound is not None else None
        self.follower = StateFollower(
            self.url, self.resync, resync_s=settings.state_resync_s,
            on_connected=lambda up: metrics.state_connected.set(1 if up else 0),
            on_sync=self._synced,
        )  # fmt: skip
        self.problems: list[str] = []  # the last resync's versions that were not adopted
        registry.publisher = self.publish
        registry.refetch = self.refetch
        if self.cache is not None:
            registry.on_use = self.cache.touch
        self._sync_lock = asyncio.Lock()

    @classmethod
    def build_state(cls, settings: Settings) -> tuple[PgRegistryState, str]:
        url = settings.state_database_url.get_secret_value()  # type: ignore[union-attr]
        db.check_schema(url)  # before anything else: a mismatched replica must not start
        return PgRegistryState(url, replica_name(settings)), url

    # files ----------------------------------------------------------------------------
    def publish(self, found: AdapterVersion) -> None:
        """Upload a version registered here and stage its record (runs in a thread)."""
        stored = self.objects.put_version(found.name, found.version, found.path)
        write_marker(found.path, stored.sha256)  # verified: the cache may evict and refetch it
        manifest = json.loads((found.path / "manifest.json").read_text(encoding="utf-8"))
        self.state.stage(VersionRecord(
            found.name, found.version, stored.uri, stored.sha256, stored.size_bytes, manifest,
        ))  # fmt: skip
        self.registry.mark_verified(found.name, found.version, stored.sha256)

    def materialize(self, record: VersionRecord) -> AdapterVersion:
        """The version's files in the local store, fetched and verified if need be."""
        try:
            return self.objects.fetch_into(
                self.registry.store, record.name, record.version,
                StoredObject(record.uri, record.sha256, record.size_bytes),
            )  # fmt: skip
        except errors.AdapterIntegrityFailed:
            self.metrics.adapter_integrity_failures.inc()
            raise

    def refetch(self, name: str, version: str) -> AdapterVersion:
        record = self.state.records.get((name, version))
        if record is None:
            raise errors.AdapterNotFound(f"adapter {name!r} has no version {version!r}")
        return self.materialize(record)

    # state ----------------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self.objects.ensure_bucket)
        await self.resync()
        for name, version in self.settings.adapters.items():
            if self.registry.is_registered(name, version) or name in self.state.aliases:
                continue
            try:  # the first replica seeds the configured adapters; the others adopt them
                await self.registry.register(name, version)
            except (errors.Conflict, errors.AdapterVersionExists):
                await self.resync()
        self.follower.start()

    async def stop(self) -> None:
        await self.follower.stop()

    async def resync(self) -> None:
        async with self._sync_lock:
            shared = await asyncio.to_thread(read_all, self.url)
            self.tenants.adopt_rows(shared.tenants)
            aliases, records = dict(shared.aliases), dict(shared.records)
            for name, mine in self.state.aliases.items():
                if mine.rev > shared.seen_rev:  # committed here after that read began
                    aliases[name] = mine
                    records.update({k: r for k, r in self.state.records.items() if k[0] == name})
            self.problems = await self.registry.adopt_shared(aliases, records, self.materialize)
            if self.cache is not None:
                await asyncio.to_thread(self.cache.evict, self._keep())

    def _keep(self) -> set[tuple[str, str]]:
        keep: set[tuple[str, str]] = set()
        for name, alias in self.state.aliases.items():
            keep.update((name, v) for v in (alias.current, alias.canary) if v is not None)
        keep.update(self.registry.busy_versions())
        return keep

    def _synced(self, outcome: str, seconds: float) -> None:
        self.metrics.state_syncs.labels(outcome=outcome).inc()
        if outcome == "ok":
            self.metrics.state_last_sync.set(time.time())

    async def history(self, name: str) -> list[dict[str, Any]]:
        try:
            return await asyncio.to_thread(history, self.url, name)
        except psycopg.OperationalError as exc:
            raise errors.StateUnavailable(
                f"the shared state database cannot be reached: {exc}"
            ) from exc

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "postgres", "replica": self.state.replica,
            "connected": self.follower.connected, "last_sync": self.follower.last_sync,
            "not_adopted": self.problems,
        }  # fmt: skip
