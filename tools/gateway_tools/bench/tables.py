"""Markdown table cells shared by the benchmark reports."""

from __future__ import annotations

from typing import Any


def cell(value: Any, fmt: str) -> str:
    """A formatted value, or ``n/a`` where a side or arm has no measurement."""
    return "n/a" if value is None else fmt.format(value)
