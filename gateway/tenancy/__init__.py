"""Tenancy: API keys (hashed), tenants and their adapters, per-tenant limits. No FastAPI."""

from gateway.tenancy.keys import generate_key, hash_key, key_matches
from gateway.tenancy.limits import Lease, Limiter
from gateway.tenancy.schema_budget import SchemaBudget
from gateway.tenancy.tenants import EscalationOverride, Tenant, TenantDirectory, TenantSettings

__all__ = [
    "EscalationOverride",
    "Lease",
    "Limiter",
    "SchemaBudget",
    "Tenant",
    "TenantDirectory",
    "TenantSettings",
    "generate_key",
    "hash_key",
    "key_matches",
]
