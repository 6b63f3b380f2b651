"""API keys: random bearer tokens, stored and compared only as SHA-256 hashes.

A fast hash is the right tool here (unlike passwords): keys are 256-bit random tokens,
so there is nothing to brute-force, and every request must check one cheaply.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

# \Z, not $: "$" also matches before a trailing newline, which would let "sha256:...\n" in
HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}\Z")


def hash_key(key: str) -> str:
    """Plain SHA-256 on purpose: a 256-bit random key cannot be guessed, so salting or
    stretching (needed for passwords) would only slow down every request."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key(prefix: str = "gw-") -> str:
    """256 random bits; the prefix makes a leaked key easy to recognise in a scan."""
    return prefix + secrets.token_urlsafe(32)


def key_matches(key: str, hashed: str) -> bool:
    """Constant-time, for the one place a single known hash is checked (the admin key)."""
    return hmac.compare_digest(hash_key(key), hashed)


def fingerprint(hashed: str) -> str:
    """A short, non-secret id of a key for logs and listings."""
    return hashed.removeprefix("sha256:")[:8]
