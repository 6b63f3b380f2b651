"""docs/api.md's error table and the code agree: every code the gateway can send is
listed with its status, and every listed code exists."""

from __future__ import annotations

import importlib

from gateway import errors
from tests.contract import documented_errors


def error_classes() -> list[type[errors.GatewayError]]:
    """``GatewayError`` and every subclass, wherever defined: the server module imports
    every module that can answer a request."""
    importlib.import_module("gateway.server")
    found, pending = [], [errors.GatewayError]
    while pending:
        kind = pending.pop()
        found.append(kind)
        pending.extend(kind.__subclasses__())
    return found


def documented() -> dict[str, int]:
    rows = documented_errors()
    table = dict((code, status) for status, code in rows)
    assert len(table) == len(rows), "a code is listed with two statuses in docs/api.md"
    return table


def test_every_code_in_the_code_is_documented_with_its_status() -> None:
    table = documented()
    # A class that inherits its code (an abstract base like ``OutputError``) adds none.
    own = {(k.code, k.status_code) for k in error_classes() if "code" in vars(k)}
    assert {code for code, _ in own} - set(table) == set(), "missing from docs/api.md"
    wrong = {(code, status) for code, status in own if table.get(code, status) != status}
    assert wrong == set(), "documented with another HTTP status"


def test_every_documented_code_exists() -> None:
    codes = {k.code for k in error_classes()}
    assert set(documented()) - codes == set(), "documented but never sent"
