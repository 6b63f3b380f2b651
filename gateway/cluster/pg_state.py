"""The adapter registry's state in Postgres: versions, aliases, canaries and history.

It keeps the interface of the file-backed ``RegistryState`` (``snapshot``, ``commit``,
``aliases``), so the registry's logic is the same in both modes. ``commit`` writes only
the aliases that changed, in one transaction, each ``UPDATE`` guarded by the row version
the replica started from: when two replicas change one alias at once, one commits and the
other gets 409 and changes nothing. The transaction ends with ``NOTIFY``, which Postgres
delivers only if it commits, so other replicas hear of exactly the changes that happened.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from gateway import errors
from gateway.cluster.db import CHANNEL, connect, transaction
from gateway.registry.state import AliasState, RegistryState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionRecord:
    """Where a version's files are and what they hash to: enough for any replica to fetch
    and verify them."""

    name: str
    version: str
    uri: str
    sha256: str
    size_bytes: int
    manifest: dict[str, Any]


@dataclass(frozen=True)
class SharedState:
    """One consistent read of everything a replica serves from."""

    aliases: dict[str, AliasState]
    records: dict[tuple[str, str], VersionRecord]
    tenants: list[dict[str, Any]]
    seen_rev: int  # the newest alias change this read can contain


def read_all(url: str) -> SharedState:
    """Aliases, versions and tenants from one snapshot (REPEATABLE READ), so a replica never
    adopts an alias whose version row it did not see."""
    with connect(url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            records = {
                (r["name"], r["version"]): VersionRecord(
                    r["name"], r["version"], r["uri"], r["sha256"], r["size_bytes"], r["manifest"]
                )
                for r in conn.execute(
                    "SELECT name, version, uri, sha256, size_bytes, manifest "
                    "FROM adapter_versions ORDER BY created_at, name, version"
                )
            }
            aliases: dict[str, AliasState] = {}
            for r in conn.execute("SELECT * FROM aliases ORDER BY name"):
                versions = [v for (n, v) in records if n == r["name"]]
                aliases[r["name"]] = AliasState(
                    versions=versions, current=r["current"], history=list(r["history"]),
                    canary=r["canary"], canary_weight=float(r["canary_weight"]), rev=r["rev"],
                )  # fmt: skip
            seen = conn.execute(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS rev FROM alias_rev"
            ).fetchone()
            keys: dict[str, list[str]] = {}
            for r in conn.execute("SELECT tenant, key_hash FROM tenant_keys ORDER BY position"):
                keys.setdefault(r["tenant"], []).append(r["key_hash"])
            tenants = [
                {"name": r["name"], "key_hashes": keys.get(r["name"], []), **r["settings"]}
                for r in conn.execute("SELECT name, settings FROM tenants ORDER BY name")
            ]
    return SharedState(aliases, records, tenants, int(seen["rev"]) if seen else 0)


class PgRegistryState(RegistryState):
    def __init__(self, url: str, replica: str) -> None:
        super().__init__(None)
        self.url = url
        self.replica = replica
        self.records: dict[tuple[str, str], VersionRecord] = {}
        self._staged: dict[tuple[str, str], VersionRecord] = {}

    def stage(self, record: VersionRecord) -> None:
        """A version's record, written by the next ``commit`` that registers it."""
        self._staged[(record.name, record.version)] = record

    def adopt(self, aliases: dict[str, AliasState], records: dict[tuple[str, str], VersionRecord]):
        """Take what another replica committed (``gateway.cluster.sync``)."""
        self.aliases, self.records = aliases, records

    def commit(self, aliases: dict[str, AliasState], action: str = "change") -> None:
        changed = sorted(
            n
            for n in set(self.aliases) | set(aliases)
            if _differs(self.aliases.get(n), aliases.get(n))
        )
        if not changed:
            self.aliases = aliases
            return
        revs: dict[str, int] = {}
        try:
            with transaction(self.url) as conn:
                for name in changed:
                    revs[name] = self._write(
                        conn, name, self.aliases.get(name), aliases.get(name), action
                    )
                conn.execute(
                    "SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps({"aliases": changed}))
                )
        except psycopg.errors.UniqueViolation as exc:
            raise errors.Conflict(
                f"{', '.join(changed)} changed on another replica; retry",
                hint="the replica resyncs within seconds",
            ) from exc
        except psycopg.OperationalError as exc:
            raise errors.StateUnavailable(
                f"the shared state database cannot be reached, so the change to "
                f"{', '.join(changed)} was not made: {exc}"
            ) from exc
        # only the changed names: a resync may have adopted newer copies of the others
        # while this transaction ran
        adopted = dict(self.aliases)
        for name in changed:
            if name in aliases:
                adopted[name] = copy.deepcopy(aliases[name])
                adopted[name].rev = revs[name]
            else:
                adopted.pop(name, None)
        for name in changed:
            for version in aliases[name].versions if name in aliases else []:
                record = self._staged.pop((name, version), None)
                if record is not None:
                    self.records[(name, version)] = record
        for key in [k for k in self.records if k[0] in changed]:
            if key[0] not in adopted or key[1] not in adopted[key[0]].versions:
                del self.records[key]
        self.aliases = adopted

    def _write(
        self, conn: psycopg.Connection, name: str, old: AliasState | None,
        new: AliasState | None, action: str,
    ) -> int:  # fmt: skip
        """One alias's change; returns its new row version. The row is locked by the
        guarded UPDATE, so the version rows it references cannot change under it."""
        rev = old.rev if old is not None else 0
        before = set(old.versions) if old else set()
        after = set(new.versions) if new else set()
        for version in sorted(after - before):
            record = self._staged.get((name, version)) or self.records.get((name, version))
            if record is None:
                raise errors.traced(
                    errors.GatewayError, f"{name}/{version} has no object record", log,
                    RuntimeError("registered without publish"),
                )  # fmt: skip
            conn.execute(
                "INSERT INTO adapter_versions (name, version, uri, sha256, size_bytes, manifest) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    name,
                    version,
                    record.uri,
                    record.sha256,
                    record.size_bytes,
                    Jsonb(record.manifest),
                ),
            )  # a version taken on another replica: UniqueViolation, a 409
        if rev == 0:
            found = conn.execute(
                "INSERT INTO aliases (name, current, history, canary, canary_weight, rev) "
                "VALUES (%s, %s, %s, %s, %s, nextval('alias_rev')) ON CONFLICT (name) DO NOTHING "
                "RETURNING rev",
                _row(name, new),
            ).fetchone()
        elif new is None:
            found = conn.execute(
                "DELETE FROM aliases WHERE name = %s AND rev = %s "
                "RETURNING nextval('alias_rev') AS rev",
                (name, rev),
            ).fetchone()
        else:
            found = conn.execute(
                "UPDATE aliases SET current = %s, history = %s, canary = %s, canary_weight = %s, "
                "rev = nextval('alias_rev') WHERE name = %s AND rev = %s RETURNING rev",
                (*_row(name, new)[1:], name, rev),
            ).fetchone()
        if found is None:
            raise errors.Conflict(
                f"adapter {name!r} was changed by another replica since this one last synced; "
                "nothing was changed",
                hint="retry: the replica resyncs within seconds",
            )
        for version in sorted(before - after):
            conn.execute(
                "DELETE FROM adapter_versions WHERE name = %s AND version = %s", (name, version)
            )
        conn.execute(
            "INSERT INTO alias_events (name, action, previous, current, canary, canary_weight, "
            "rev, replica) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (name, action, old.current if old else None, new.current if new else None,
             new.canary if new else None, new.canary_weight if new else None, found["rev"],
             self.replica),
        )  # fmt: skip
        return int(found["rev"])


def _row(name: str, alias: AliasState | None) -> tuple[Any, ...]:
    assert alias is not None
    return (name, alias.current, Jsonb(alias.history), alias.canary, alias.canary_weight)


def _differs(old: AliasState | None, new: AliasState | None) -> bool:
    if old is None or new is None:
        return old is not new
    return old.as_dict() != new.as_dict()


def history(url: str, name: str, limit: int = 100) -> list[dict[str, Any]]:
    """The newest alias changes, newest first (the admin API shows them)."""
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT action, previous, current, canary, canary_weight, rev, replica, at "
            "FROM alias_events WHERE name = %s ORDER BY id DESC LIMIT %s",
            (name, limit),
        ).fetchall()
    return [{**r, "at": r["at"].isoformat()} for r in rows]
