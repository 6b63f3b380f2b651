"""Shared state for many replicas: Postgres as the source of truth for tenants, adapter
versions and aliases (with canaries), kept in step by ``LISTEN/NOTIFY``.

Single-process mode (files) stays the default; ``state_backend: postgres`` selects this.
Requests never wait on the database: every replica serves from its in-memory copy, which
a notification (or the periodic resync) replaces whole. Only changes go to Postgres, as
single transactions that check the row version they started from.
"""
