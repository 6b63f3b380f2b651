"""Canonical JSON of a schema: the schema cache's key and the manifest's schema hash.

Both must agree byte for byte, or an adapter's recorded schema would not match the one
the gateway serves, so there is one serialisation.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(schema: Any) -> bytes:
    """Key order and whitespace removed; non-ASCII kept as UTF-8 (so sizes are real)."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def canonical_digest(schema: Any) -> str:
    return hashlib.sha256(canonical_json(schema)).hexdigest()
