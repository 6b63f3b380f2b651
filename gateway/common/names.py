"""The one rule for names that become folder names or keys: adapters, versions, tenants."""

from __future__ import annotations

import re

from gateway import errors

# Letters, digits, '.', '_' and '-', not starting with a dot or dash: safe as one path
# component ('..' and '.hidden' cannot match) and in a URL without escaping.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
NAME_RE = re.compile(NAME_PATTERN)
NAME_RULE = "1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"
EXCERPT_CHARS = 64


def is_valid_name(value: object) -> bool:
    return isinstance(value, str) and NAME_RE.fullmatch(value) is not None


def require_name(
    value: object, what: str, error: type[errors.GatewayError] = errors.InvalidRequest
) -> str:
    """``value`` if it is a valid name, else ``error`` naming the rule (``param=what``)."""
    if not is_valid_name(value):
        raise error(f"{what} {excerpt(value)} must be {NAME_RULE}", param=what)
    return str(value)


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """Client text as it may appear in an error body: escaped by ``repr`` (newlines, lone
    surrogates, bidi marks) and cut to ``limit`` characters, so a 20 MB name never
    comes back whole and nothing in it can break a header, a log line or JSON encoding."""
    if not isinstance(value, str):
        return repr(value)[:limit]
    return repr(value[:limit]) + ("…" if len(value) > limit else "")
