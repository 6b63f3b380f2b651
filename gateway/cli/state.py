"""``gateway state migrate | check | import-tenants``: the shared state database.

Migrations are a deliberate step, run once per upgrade, not something every replica does
at start (see ``gateway.cluster.db``). ``import-tenants`` moves a single-process
``tenants.yaml`` into Postgres, so going from one replica to many keeps every key.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gateway.common.usage import UsageError


def _url(args: argparse.Namespace) -> str:
    from gateway.config import Settings

    if args.database_url:
        return args.database_url
    settings = Settings()
    if settings.state_database_url is None:
        raise UsageError("no database: pass --database-url or set GATEWAY_STATE_DATABASE_URL")
    return settings.state_database_url.get_secret_value()


def cmd_migrate(args: argparse.Namespace) -> int:
    from gateway.cluster import db

    url = _url(args)
    before = _revision(url)
    after = db.migrate(url)
    print(json.dumps({"before": before, "after": after, "head": db.head_revision()}))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from gateway.cluster import db

    try:
        found = db.check_schema(_url(args))
    except db.SchemaMismatch as exc:
        raise UsageError(str(exc)) from exc
    print(json.dumps({"schema": found, "ok": True}))
    return 0


def cmd_import_tenants(args: argparse.Namespace) -> int:
    from gateway.cluster import db
    from gateway.cluster.pg_state import read_all
    from gateway.cluster.pg_tenants import PgTenantDirectory
    from gateway.tenancy.tenants import TenantDirectory

    url = _url(args)
    try:
        db.check_schema(url)
        source = TenantDirectory.load(Path(args.file), None)
    except (db.SchemaMismatch, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    target = PgTenantDirectory(url, None)
    target.adopt_rows(read_all(url).tenants)
    imported: list[str] = []
    for tenant in source.all():
        target.upsert(tenant)
        imported.append(tenant.name)
    print(json.dumps({"imported": imported}))
    return 0


def _revision(url: str) -> Any:
    from gateway.cluster import db

    return db.current_revision(url)


def add_state_commands(sub: Any) -> None:
    state = sub.add_parser("state", help="the shared state database (state_backend=postgres)")
    state_sub = state.add_subparsers(dest="state_command", required=True)
    for name, text, func in (
        ("migrate", "create or upgrade the tables (Alembic) to this version's schema", cmd_migrate),
        ("check", "exit 2 unless the database's schema is this version's", cmd_check),
        ("import-tenants", "copy a tenants.yaml (key hashes, limits) into the database",
         cmd_import_tenants),
    ):  # fmt: skip
        cmd = state_sub.add_parser(name, help=text)
        cmd.add_argument("--database-url", help="default: GATEWAY_STATE_DATABASE_URL")
        if name == "import-tenants":
            cmd.add_argument("file", help="a tenants.yaml")
        cmd.set_defaults(func=func)
