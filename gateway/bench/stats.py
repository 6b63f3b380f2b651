"""The one percentile every benchmark report uses, so p50/p95 figures compare across them."""

from __future__ import annotations

from collections.abc import Sequence

# The sentence every report prints under its latency figures.
DEFINITION = "Percentiles interpolate linearly between the closest ranks (numpy's default)."


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-quantile (``q`` in [0, 1]; 0.95 is p95) by linear interpolation between
    the closest ranks: with the values sorted as ``x[0..n-1]`` and ``h = q * (n - 1)``,
    ``x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)])``. This is numpy's
    default (``method="linear"``); small samples are not snapped onto one neighbour.
    ``None`` when there are no values: no samples, no percentile."""
    if not 0 <= q <= 1:
        raise ValueError(f"q must be in [0, 1], got {q}")
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ms(seconds: float | None, digits: int = 1) -> float | None:
    """Seconds as rounded milliseconds for a report; ``None`` (no samples) stays ``None``."""
    return None if seconds is None else round(1000 * seconds, digits)


def rounded(value: float | None, digits: int) -> float | None:
    """``value`` rounded for a report; ``None`` (no samples) stays ``None``."""
    return None if value is None else round(value, digits)
