"""Connections, migrations and the schema-version check for the shared state database.

Migrations are Alembic's, run on demand (``gateway state migrate``) rather than by every
replica at start: N replicas racing to migrate, or an old replica migrating a database a
newer one already uses, are exactly what a version check prevents. A replica whose code
expects another schema version refuses to start and says which command fixes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
CHANNEL = "gateway_state"
CONNECT_TIMEOUT_S = 3


class SchemaMismatch(RuntimeError):
    """The database's schema version is not the one this code was written for."""


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection:
    """A short connect timeout: a replica must notice a dead database quickly and go on
    serving from its cache, not hang a worker thread for minutes."""
    return psycopg.connect(
        url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S, row_factory=dict_row
    )


@contextmanager
def transaction(url: str) -> Iterator[psycopg.Connection]:
    """One connection, one transaction: committed on success, rolled back on any error."""
    with connect(url) as conn, conn.transaction():
        yield conn


def _alembic_config(url: str) -> Any:  # alembic is imported only when used
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return config


def sqlalchemy_url(url: str) -> str:
    """Alembic goes through SQLAlchemy, which must be told to use psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config("postgresql://")).get_current_head()


def migrate(url: str, revision: str = "head") -> str:
    """Upgrade the database to ``revision``; returns the version it is at afterwards."""
    from alembic import command

    command.upgrade(_alembic_config(url), revision)
    return current_revision(url) or ""


def current_revision(url: str) -> str | None:
    with connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('alembic_version') AS t").fetchone()
        if not exists or exists["t"] is None:
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return row["version_num"] if row else None


def check_schema(url: str) -> str:
    """Refuse to run against a schema this code was not written for."""
    found, wanted = current_revision(url), head_revision()
    if found == wanted:
        return found
    if found is None:
        raise SchemaMismatch(
            "the shared state database has no gateway schema yet: run "
            "`gateway state migrate` (with the same GATEWAY_STATE_DATABASE_URL) first"
        )
    raise SchemaMismatch(
        f"the shared state database is at schema version {found!r}, and this gateway "
        f"needs {wanted!r}: run `gateway state migrate` if the database is older, or "
        "upgrade this gateway if it is newer (another replica may already run a newer one)"
    )
