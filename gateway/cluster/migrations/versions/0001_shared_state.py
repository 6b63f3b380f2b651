"""Shared state: tenants and their key hashes, adapter versions, aliases with a canary,
and the history of every alias change.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE tenants (
            name text PRIMARY KEY,
            settings jsonb NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE tenant_keys (
            key_hash text PRIMARY KEY CHECK (key_hash ~ '^sha256:[0-9a-f]{64}$'),
            tenant text NOT NULL REFERENCES tenants (name) ON DELETE CASCADE,
            position integer NOT NULL
        );
        CREATE TABLE adapter_versions (
            name text NOT NULL,
            version text NOT NULL,
            uri text NOT NULL,
            sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
            size_bytes bigint NOT NULL,
            manifest jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (name, version)
        );
        -- one sequence for every alias change: a replica can tell whether its own copy of
        -- an alias is newer than a snapshot it read (see gateway.cluster.shared)
        CREATE SEQUENCE alias_rev;
        CREATE TABLE aliases (
            name text PRIMARY KEY,
            current text,
            history jsonb NOT NULL DEFAULT '[]',
            canary text,
            canary_weight double precision NOT NULL DEFAULT 0
                CHECK (canary_weight >= 0 AND canary_weight <= 1),
            rev bigint NOT NULL DEFAULT nextval('alias_rev'),
            FOREIGN KEY (name, current) REFERENCES adapter_versions (name, version),
            FOREIGN KEY (name, canary) REFERENCES adapter_versions (name, version)
        );
        CREATE TABLE alias_events (
            id bigserial PRIMARY KEY,
            name text NOT NULL,
            action text NOT NULL,
            previous text,
            current text,
            canary text,
            canary_weight double precision,
            rev bigint NOT NULL,
            replica text NOT NULL,
            at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX alias_events_name ON alias_events (name, id);
        """
    )


def downgrade() -> None:
    op.execute(
        "DROP TABLE alias_events; DROP TABLE aliases; DROP SEQUENCE alias_rev; "
        "DROP TABLE adapter_versions; "
        "DROP TABLE tenant_keys; DROP TABLE tenants;"
    )
