"""Tenants in Postgres: the admin API's edits become row changes, not a rewritten file.

Each edit writes only the tenants it changed, in one transaction, and announces them;
key hashes are added and removed one by one, so a key issued on one replica is never
dropped by an edit made on another that had not yet heard of it. Authentication reads
the replica's in-memory index only, so a database outage never stops a request.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from gateway import errors
from gateway.cluster.db import CHANNEL, transaction
from gateway.tenancy.tenants import Tenant, TenantDirectory


class PgTenantDirectory(TenantDirectory):
    def __init__(self, url: str, admin_key_hash: str | None) -> None:
        super().__init__(None, admin_key_hash)
        self.url = url

    def adopt_rows(self, rows: list[dict[str, Any]]) -> None:
        """Replace the in-memory tenants with what the database holds (a resync)."""
        tenants = [Tenant(**row) for row in rows]
        with self._lock:
            self._adopt(self._index(tenants))

    def _commit(self, tenants: list[Tenant]) -> None:
        try:
            index = self._index(tenants)
        except ValueError as exc:
            raise errors.Conflict(str(exc)) from exc
        old, new = self._tenants, index[0]
        changed = [t for n, t in new.items() if old.get(n) != t]
        removed = [n for n in old if n not in new]
        try:
            with transaction(self.url) as conn:
                for tenant in changed:
                    self._write(conn, tenant, old.get(tenant.name))
                for name in removed:
                    conn.execute("DELETE FROM tenants WHERE name = %s", (name,))
                names = [t.name for t in changed] + removed
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps({"tenants": names})))
        except psycopg.errors.UniqueViolation as exc:
            raise errors.Conflict(f"a key of this tenant belongs to another tenant: {exc}") from exc
        except psycopg.OperationalError as exc:
            raise errors.StateUnavailable(
                f"the shared state database cannot be reached, so the tenant change was not "
                f"made: {exc}"
            ) from exc
        self._adopt(index)

    @staticmethod
    def _write(conn: psycopg.Connection, tenant: Tenant, old: Tenant | None) -> None:
        settings = tenant.model_dump(mode="json", exclude_none=True, exclude={"name", "key_hashes"})
        conn.execute(
            "INSERT INTO tenants (name, settings) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE "
            "SET settings = EXCLUDED.settings, updated_at = now()",
            (tenant.name, Jsonb(settings)),
        )
        before = set(old.key_hashes) if old else set()
        for hashed in before - set(tenant.key_hashes):
            conn.execute(
                "DELETE FROM tenant_keys WHERE key_hash = %s AND tenant = %s", (hashed, tenant.name)
            )
        for position, hashed in enumerate(tenant.key_hashes):
            if hashed not in before:
                conn.execute(
                    "INSERT INTO tenant_keys (key_hash, tenant, position) VALUES (%s, %s, %s)",
                    (hashed, tenant.name, position),
                )
