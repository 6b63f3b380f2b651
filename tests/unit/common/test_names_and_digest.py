"""The shared name rule and schema digest: one definition, the same answer everywhere."""

from __future__ import annotations

import pytest

from gateway.common.digest import canonical_digest, canonical_json
from gateway.common.names import is_valid_name


@pytest.mark.parametrize("name", ["demo", "v1", "banking77", "a.b_c-d", "A" * 64])
def test_safe_names_pass(name: str) -> None:
    assert is_valid_name(name)


@pytest.mark.parametrize(
    "name", ["", "..", ".hidden", "-x", "a/b", "a b", "v1\n", "é", "A" * 65, None, 7]
)
def test_unsafe_names_are_refused(name: object) -> None:
    assert not is_valid_name(name)


def test_the_digest_ignores_key_order_and_whitespace() -> None:
    assert canonical_digest({"a": 1, "b": [1, 2]}) == canonical_digest({"b": [1, 2], "a": 1})
    assert canonical_digest({"a": 1}) != canonical_digest({"a": 2})
    assert canonical_json({"b": "é", "a": 1}) == '{"a":1,"b":"é"}'.encode()
