"""Mistakes of the person running a command, told apart from bugs.

A ``UsageError`` is raised where the mistake is found (a missing file, a bad row, a bad
``key=value``); ``gateway`` prints its message as one line and exits 2, keeping the
traceback for ``--debug``. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from pydantic import ValidationError


class UsageError(ValueError):
    """A file, value or setting the user gave is wrong; the message says which, for them.
    A ``ValueError`` so that callers catching bad values keep catching it."""


def describe(exc: ValidationError, known: Iterable[str] = ()) -> str:
    """pydantic's many-line report as one line, ``field: problem`` per error; an unknown
    key gets the closest of ``known`` as a suggestion. Input values are left out: they
    may be secrets (an admin key) and the user has them at hand."""
    names = list(known)
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            close = difflib.get_close_matches(where, names, n=1)
            parts.append(
                f"unknown key {where!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
            )
            continue
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)
