"""The per-tenant budget of new schemas per minute (a sliding window on an injected
clock), and the tenant fields that tune sharing: ``weight`` and the budget override."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from gateway import errors
from gateway.tenancy import SchemaBudget, Tenant

KEY_HASH = "sha256:" + "0" * 64


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tenant(name: str = "acme", **fields: object) -> Tenant:
    return Tenant(name=name, key_hashes=[KEY_HASH], **fields)


def send(budget: SchemaBudget, who: Tenant, digest: str) -> None:
    """What admission does: check, then (every other limit said yes) charge."""
    budget.check(who, digest)
    budget.see(digest, who.name)


def test_new_schemas_past_the_budget_wait_for_the_window_to_slide() -> None:
    clock = Clock()
    budget = SchemaBudget(per_minute=2, clock=clock)
    acme = tenant()
    send(budget, acme, "s1")
    clock.now += 20
    send(budget, acme, "s2")
    clock.now += 10
    with pytest.raises(errors.SchemaBudgetExceeded) as refused:
        send(budget, acme, "s3")
    assert refused.value.status_code == 429 and refused.value.retryable
    assert (
        refused.value.code == "schema_budget_exceeded" and refused.value.reason == "schema_budget"
    )
    assert refused.value.retry_after == 30  # s1 leaves the window 60 s after it came
    clock.now += 30
    send(budget, acme, "s3")  # s1 has left the window
    with pytest.raises(errors.SchemaBudgetExceeded):
        send(budget, acme, "s4")


def test_a_schema_seen_before_costs_nothing_whoever_sent_it() -> None:
    budget = SchemaBudget(per_minute=1, clock=Clock())
    acme, other = tenant(), tenant("other")
    send(budget, other, "shared")
    send(budget, acme, "own")  # acme's budget is now spent
    for _ in range(5):
        send(budget, acme, "shared")  # seen: free, even over the budget
        send(budget, acme, "own")
    with pytest.raises(errors.SchemaBudgetExceeded):
        send(budget, acme, "new")


def test_a_refused_or_unseen_check_charges_nothing() -> None:
    budget = SchemaBudget(per_minute=1, clock=Clock())
    acme = tenant()
    budget.check(acme, "s1")  # checked, then another limit refused: never seen
    budget.check(acme, "s2")
    assert budget.is_new("s1") and budget.is_new("s2")
    send(budget, acme, "s2")
    assert not budget.is_new("s2")


def test_a_tenants_own_budget_overrides_the_servers() -> None:
    budget = SchemaBudget(per_minute=2, clock=Clock())
    strict, generous = (
        tenant("strict", schema_compile_budget_per_minute=1),
        tenant("generous", schema_compile_budget_per_minute=4),
    )
    send(budget, strict, "a1")
    with pytest.raises(errors.SchemaBudgetExceeded, match="budget 1"):
        send(budget, strict, "a2")
    for digest in ("b1", "b2", "b3", "b4"):
        send(budget, generous, digest)
    with pytest.raises(errors.SchemaBudgetExceeded, match="budget 4"):
        send(budget, generous, "b5")


def test_uncharged_sightings_and_forgotten_schemas() -> None:
    """Open mode (or an operator's schema) charges nobody but is remembered; past
    ``max_seen`` the least recently used schema is new again."""
    budget = SchemaBudget(per_minute=1, clock=Clock(), max_seen=2)
    budget.see("x", None)
    budget.see("y", None)
    budget.see("x", None)  # used again: y is now the oldest
    budget.see("z", None)
    assert not budget.is_new("x") and budget.is_new("y") and not budget.is_new("z")
    send(budget, tenant(), "y")  # nothing was charged before: the budget is whole


def test_tenant_sharing_fields_default_and_bounds() -> None:
    plain = tenant()
    assert plain.weight == 1.0 and plain.schema_compile_budget_per_minute is None
    assert tenant(weight=2.5, schema_compile_budget_per_minute=3).weight == 2.5
    for bad in (
        {"weight": 0},
        {"weight": -1},
        {"weight": math.nan},
        {"weight": math.inf},
        {"weight": 1e-9},  # 1/weight must stay a usable tag step
        {"weight": 1e6},
        {"schema_compile_budget_per_minute": 0},
    ):
        with pytest.raises(ValidationError):
            tenant(**bad)
