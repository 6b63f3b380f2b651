"""A tenant's escalation overrides: what is accepted, what is refused, what wins."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.calibration import EscalationPolicy
from gateway.tenancy import EscalationOverride, Tenant, TenantDirectory, hash_key

MANIFEST = EscalationPolicy(0.5, frozenset({"lost_card"}))


def tenant(**escalation: dict) -> Tenant:
    return Tenant(name="acme", key_hashes=[hash_key("k")], escalation=escalation)


def test_precedence_adapter_then_star_then_manifest() -> None:
    assert tenant().escalation_policy("bank", MANIFEST) == MANIFEST
    star = tenant(**{"*": {"threshold": 0.8}})
    assert star.escalation_policy("bank", MANIFEST) == EscalationPolicy(0.8, MANIFEST.labels)
    both = tenant(**{"*": {"threshold": 0.8}, "bank": {"labels": ["fraud"]}})
    assert both.escalation_policy("bank", MANIFEST) == EscalationPolicy(0.8, frozenset({"fraud"}))
    assert both.escalation_policy("other", MANIFEST) == EscalationPolicy(0.8, MANIFEST.labels)
    own = tenant(**{"*": {"threshold": 0.8}, "bank": {"threshold": 0.1, "labels": []}})
    assert own.escalation_policy("bank", MANIFEST) == EscalationPolicy(0.1, frozenset())
    assert tenant(bank={}).escalation_policy("bank", EscalationPolicy()) == EscalationPolicy()


@pytest.mark.parametrize(
    "escalation",
    [
        {"bad name": {}},
        {"../x": {}},
        {"*": {"threshold": 1.5}},
        {"*": {"threshold": -0.1}},
        {"*": {"threshold": math.nan}},
        {"*": {"labels": ["\ud800"]}},
        {"*": {"labels": [""]}},
        {"*": {"labels": "lost_card"}},
        {"*": {"threshold": 0.5, "extra": 1}},
    ],
)
def test_bad_overrides_are_refused(escalation: dict) -> None:
    with pytest.raises(ValidationError):
        tenant(**escalation)


def test_overrides_survive_the_tenants_file(tmp_path: Path) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text("tenants: []\n")
    directory = TenantDirectory.load(path, None)
    directory.upsert(tenant(**{"*": {"threshold": 0.7}, "bank": {"labels": ["fraud"]}}))
    again = TenantDirectory.load(path, None).get("acme")
    assert again is not None
    assert again.escalation == {
        "*": EscalationOverride(threshold=0.7),
        "bank": EscalationOverride(labels=["fraud"]),
    }
