"""OpenAI's list shape for files, jobs, events and checkpoints: newest first, a page of
``limit`` items after the ``after`` cursor, and ``has_more``."""

from __future__ import annotations

from typing import Any

from gateway import errors


def page(items: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    """``items`` newest first, each with an ``id``. An ``after`` that names none of them is
    refused (the same for an id that exists elsewhere, so nothing leaks)."""
    start = 0
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise errors.InvalidRequest("after names no item of this list", param="after")
        start = ids.index(after) + 1
    chosen = items[start : start + limit]
    return {
        "object": "list",
        "data": chosen,
        "has_more": start + limit < len(items),
        "first_id": chosen[0]["id"] if chosen else None,
        "last_id": chosen[-1]["id"] if chosen else None,
    }
