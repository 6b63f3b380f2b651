"""The one rule for names that become folder names or keys: adapters, versions, tenants."""

from __future__ import annotations

import re

# Letters, digits, '.', '_' and '-', not starting with a dot or dash: safe as one path
# component ('..' and '.hidden' cannot match) and in a URL without escaping.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
NAME_RE = re.compile(NAME_PATTERN)
NAME_RULE = "1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"


def is_valid_name(value: object) -> bool:
    return isinstance(value, str) and NAME_RE.fullmatch(value) is not None
