"""Schema names: which ones a client may send, and what each one shows to operators.

A name is echoed (the X-Gateway-Schema header, error messages), so only OpenAI's plain
ASCII names get that far. On /metrics a client's name would be free text: it could take
every label slot or carry what the exposition cannot encode, so an inline schema is
counted as ``inline`` and only the names an operator created appear there.
"""

from __future__ import annotations

import re

from gateway import errors

SCHEMA_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")  # OpenAI's rule for json_schema.name
NAME_PARAM = "response_format.json_schema.name"
NAME_RULE = "1-64 characters of letters, digits, '_' or '-'"
INLINE = "inline"  # the one label value every inline schema records


def is_schema_name(name: str) -> bool:
    return SCHEMA_NAME.fullmatch(name) is not None


def check_name(name: str) -> None:
    """Refuse a name outside the rule, echoing only a short escaped excerpt of it."""
    if not is_schema_name(name):
        shown = ascii(name[:20]) + ("..." if len(name) > 20 else "")
        raise errors.InvalidRequest(f"a schema name is {NAME_RULE}; got {shown}", param=NAME_PARAM)
