"""Tenants: who may call, with which adapters, within which limits.

Loaded from a YAML file (``{"tenants": [...]}``) holding only key *hashes*; the admin
API edits the same file, rewriting it whole and atomically, and adopts a change only
after it is on disk. ``gateway keys new`` prints a fresh key and its hash, and
``gateway keys hash`` (key on stdin) the hash of an existing one.

A tenant's files and fine-tuning jobs are kept under its ``id``, not its name: the admin
API gives every tenant it creates a fresh random id, so a tenant created later under a
deleted tenant's name never sees what the first one left. (A tenant written into the
file by hand without an ``id`` is keyed by its name.) Names the gateway itself records as
label values on ``/metrics`` are not tenant names, so no tenant's series mix with them.
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway import errors
from gateway.calibration import EscalationPolicy
from gateway.common.names import NAME_PATTERN, NAME_RULE, excerpt, is_valid_name
from gateway.fileio import write_text_atomic
from gateway.observability.metrics import INVALID, OTHER
from gateway.tenancy.keys import HASH_RE, generate_key, hash_key

TENANT_ID = r"^tn-[0-9a-f]{24}$"
# Label values the gateway records itself (tests/unit/tenancy/test_tenant_ids.py reads them
# from the code): the tenant of keyless and refused requests, auth_mode none's one owner,
# the console's playground, LabelFolder's overflow and bad values, the base model and
# inline schemas, an adapter not yet resolved. Compared case-insensitively.
RESERVED_NAMES = frozenset(
    {"unauthenticated", "open", "console", OTHER, INVALID, "none", "base", "inline",
     "unresolved", "unknown", "admin"}
)  # fmt: skip


def new_tenant_id() -> str:
    return f"tn-{secrets.token_hex(12)}"


def check_tenant_name(name: str) -> None:
    """A name the metrics already use for something else is refused (400)."""
    if name.lower() in RESERVED_NAMES:
        raise errors.InvalidRequest(
            f"{name!r} is reserved: the gateway uses it as a label value on /metrics "
            f"(reserved: {', '.join(sorted(RESERVED_NAMES))})",
            param="name",
        )


class EscalationOverride(BaseModel):
    """A tenant's own escalation rule for an adapter; a field left out keeps the one
    below it (the tenant's ``"*"`` entry, then the adapter's manifest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    labels: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, max_length=1000
    )

    @field_validator("labels")
    @classmethod
    def _text_labels(cls, labels: list[str] | None) -> list[str] | None:
        """Written to the tenants file and compared with labels: text only."""
        for label in labels or ():
            try:
                label.encode()
            except UnicodeEncodeError:
                raise ValueError(f"escalation labels: {excerpt(label)} is not text") from None
        return labels

    def applied_to(self, policy: EscalationPolicy) -> EscalationPolicy:
        """``policy`` with this override's fields; its labels replace the policy's."""
        return EscalationPolicy(
            policy.threshold if self.threshold is None else self.threshold,
            policy.labels if self.labels is None else frozenset(self.labels),
        )


class TenantSettings(BaseModel):
    """What an operator sets for a tenant (the admin API's body); keys are not in it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_adapters: list[str] = Field(default_factory=list, max_length=1000)  # "*" = all
    default_adapter: str | None = Field(default=None, pattern=NAME_PATTERN)
    default_schema: str | None = Field(default=None, pattern=NAME_PATTERN)
    max_tokens: int | None = Field(default=None, ge=1)
    requests_per_minute: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    tokens_per_minute: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_concurrency: int | None = Field(default=None, ge=1)
    # Share of the engine when tenants wait for it: admitted in proportion to weight.
    weight: float = Field(default=1.0, ge=0.001, le=1000, allow_inf_nan=False)
    # New (never seen) schemas per minute; None: the server's schema_compile_budget_per_minute.
    schema_compile_budget_per_minute: int | None = Field(default=None, ge=1)
    # Keyed by adapter name (the base model's served name for the base model) or "*".
    escalation: dict[str, EscalationOverride] = Field(default_factory=dict, max_length=1000)

    @field_validator("allowed_adapters")
    @classmethod
    def _adapter_names(cls, names: list[str]) -> list[str]:
        """Names follow the name rule, so the settings never hold text (a newline, a lone
        surrogate) that no adapter can have and that would break the tenants file or a reply."""
        bad = [n for n in names if n != "*" and not is_valid_name(n)]
        if bad:
            raise ValueError(f"allowed_adapters: {excerpt(bad[0])} is not '*' or {NAME_RULE}")
        return names

    @field_validator("escalation")
    @classmethod
    def _escalation_keys(
        cls, overrides: dict[str, EscalationOverride]
    ) -> dict[str, EscalationOverride]:
        bad = [n for n in overrides if n != "*" and not is_valid_name(n)]
        if bad:
            raise ValueError(f"escalation: {excerpt(bad[0])} is not '*' or {NAME_RULE}")
        return overrides

    def escalation_policy(self, adapter: str, policy: EscalationPolicy) -> EscalationPolicy:
        """The adapter's ``policy`` under this tenant's overrides: the tenant's entry for
        the adapter wins over its ``"*"`` entry, which wins over the manifest."""
        for key in ("*", adapter):
            if key in self.escalation:
                policy = self.escalation[key].applied_to(policy)
        return policy

    @model_validator(mode="after")
    def _default_allowed(self) -> TenantSettings:
        if self.default_adapter is not None and not self.may_use(self.default_adapter):
            raise ValueError(f"default_adapter {self.default_adapter!r} is not in allowed_adapters")
        return self

    def may_use(self, adapter: str | None) -> bool:
        """The base model (None) is always allowed."""
        return adapter is None or "*" in self.allowed_adapters or adapter in self.allowed_adapters


class Tenant(TenantSettings):
    name: str = Field(pattern=NAME_PATTERN)
    key_hashes: list[str] = Field(min_length=1)
    # Where its files and jobs are kept (``owner_id``); set once by the admin API.
    id: str | None = Field(default=None, pattern=TENANT_ID)

    @property
    def owner_id(self) -> str:
        """What the tenant's files, jobs and fine-tuned versions are keyed by."""
        return self.id or self.name

    @field_validator("key_hashes")
    @classmethod
    def _hashes(cls, hashes: list[str]) -> list[str]:
        bad = [h for h in hashes if not HASH_RE.match(h)]
        if bad:
            raise ValueError(
                "key_hashes must look like 'sha256:<64 hex digits>' (never plain keys)"
            )
        return hashes


class TenantDirectory:
    """Tenants by name and by key hash. Admin edits (threadpool or event loop) take a lock;
    readers take none, because a change swaps in whole new dicts instead of editing them."""

    def __init__(self, path: Path | None, admin_key_hash: str | None) -> None:
        self.path = path
        self.admin_key_hash = admin_key_hash
        self._tenants: dict[str, Tenant] = {}
        self._by_hash: dict[str, Tenant] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path | None, admin_key_hash: str | None) -> TenantDirectory:
        directory = cls(path, admin_key_hash)
        if path is None:
            return directory
        if not path.is_file():
            raise ValueError(f"tenants file {path} does not exist (or is not a file)")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML: {exc}") from exc
        entries = (raw.get("tenants") or []) if isinstance(raw, dict) else None
        if not isinstance(entries, list):
            raise ValueError(f"{path}: expected a mapping with a 'tenants' list")
        try:
            tenants = [Tenant(**t) for t in entries]
        except (ValidationError, TypeError) as exc:
            raise ValueError(f"{path}: invalid tenant: {exc}") from exc
        directory._adopt(directory._index(tenants))
        return directory

    def authenticate(self, key: str | None) -> Tenant:
        if not key:
            raise errors.Unauthorized("missing API key: send Authorization: Bearer <key>")
        hashed = hash_key(key)  # hashing first makes the lookup's timing independent of the key
        tenant = self._by_hash.get(hashed)
        if tenant is None or hashed == self.admin_key_hash:
            raise errors.Unauthorized("invalid API key")
        return tenant

    def get(self, name: str) -> Tenant | None:
        return self._tenants.get(name)

    def all(self) -> list[Tenant]:
        return list(self._tenants.values())

    def upsert(self, tenant: Tenant) -> None:
        with self._lock:
            current = list(self._tenants.values())
            if tenant.name in self._tenants:  # keep its place, so the file diff stays small
                self._commit([tenant if t.name == tenant.name else t for t in current])
            else:
                self._commit([*current, tenant])

    def delete(self, name: str) -> bool:
        with self._lock:
            if name not in self._tenants:
                return False
            self._commit([t for t in self._tenants.values() if t.name != name])
            return True

    def issue_key(self, name: str) -> str:
        """A new key for ``name``; its plain text is returned once and never stored."""
        with self._lock:
            tenant = self._tenants.get(name)
            if tenant is None:
                raise errors.InvalidRequest(f"no tenant {name!r}", param="name")
            key = generate_key()
            updated = tenant.model_copy(update={"key_hashes": [*tenant.key_hashes, hash_key(key)]})
            self._commit([updated if t.name == name else t for t in self._tenants.values()])
            return key

    # internals ------------------------------------------------------------------------
    def _index(self, tenants: list[Tenant]) -> tuple[dict[str, Tenant], dict[str, Tenant]]:
        by_name: dict[str, Tenant] = {}
        by_hash: dict[str, Tenant] = {}
        owners: set[str] = set()
        for tenant in tenants:
            if tenant.name in by_name:
                raise ValueError(f"tenant {tenant.name!r} is defined twice")
            if tenant.name.lower() in RESERVED_NAMES:
                raise ValueError(f"tenant name {tenant.name!r} is reserved (a /metrics label)")
            if tenant.owner_id in owners:
                raise ValueError(f"tenant {tenant.name!r}: its id is another tenant's")
            owners.add(tenant.owner_id)
            by_name[tenant.name] = tenant
            if len(set(tenant.key_hashes)) != len(tenant.key_hashes):
                raise ValueError(f"tenant {tenant.name!r} lists the same key twice")
            for hashed in tenant.key_hashes:
                if hashed == self.admin_key_hash:
                    raise ValueError("the admin key cannot be a tenant key")
                if hashed in by_hash:
                    raise ValueError(
                        f"tenants {by_hash[hashed].name!r} and {tenant.name!r} share a key"
                    )
                by_hash[hashed] = tenant
        return by_name, by_hash

    def _commit(self, tenants: list[Tenant]) -> None:
        """Validate, persist, then adopt: a failure leaves the old state everywhere."""
        try:
            index = self._index(tenants)
        except ValueError as exc:
            raise errors.Conflict(str(exc)) from exc
        if self.path is not None:
            body: dict[str, Any] = {"tenants": [_entry(t) for t in tenants]}
            write_text_atomic(self.path, yaml.safe_dump(body, sort_keys=False))
        self._adopt(index)

    def _adopt(self, index: tuple[dict[str, Tenant], dict[str, Tenant]]) -> None:
        self._tenants, self._by_hash = index


def _entry(tenant: Tenant) -> dict[str, Any]:
    """Name and keys first: the file is also read and edited by people."""
    rest = tenant.model_dump(exclude_none=True, exclude={"name", "id", "key_hashes"})
    named = {"name": tenant.name, **({"id": tenant.id} if tenant.id else {})}
    return {**named, "key_hashes": list(tenant.key_hashes), **rest}
