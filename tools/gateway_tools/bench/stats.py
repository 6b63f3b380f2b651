"""The one percentile every benchmark report uses, so p50/p95 figures compare across them,
and the bootstrap interval that decides a latency target from paired samples."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

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
    return _quantile(sorted(values), q) if values else None


def _quantile(ordered: list[float], q: float) -> float:
    """``percentile`` of values already sorted, at least one."""
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


@dataclass(frozen=True)
class Interval:
    """A sample median with a bootstrap confidence interval around it."""

    median: float
    low: float
    high: float
    confidence: float
    resamples: int
    seed: int


def bootstrap_median(
    values: Sequence[float], resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """Percentile bootstrap of the median: resample ``values`` with replacement
    ``resamples`` times (a seeded generator, so a report can be reproduced), take each
    resample's median, and cut the central ``confidence`` share of those medians. The
    median rather than the mean, because latency differences have a long tail that one
    stalled request would drag a mean across a millisecond target with."""
    if not values:
        raise ValueError("a bootstrap needs at least one value")
    rng = random.Random(seed)
    medians = sorted(
        _quantile(sorted(rng.choices(values, k=len(values))), 0.5) for _ in range(resamples)
    )
    tail = (1 - confidence) / 2
    return Interval(
        median=_quantile(sorted(values), 0.5),
        low=_quantile(medians, tail),
        high=_quantile(medians, 1 - tail),
        confidence=confidence,
        resamples=resamples,
        seed=seed,
    )


@dataclass(frozen=True)
class Verdict:
    """Whether an interval settles an "at most ``limit``" target, and if it does not,
    about how many more samples would (the interval narrows as one over root n)."""

    outcome: str  # "met", "not met" or "undecided"
    more_samples: int | None = None  # undecided only; None when the median sits on the limit

    @property
    def met(self) -> bool | None:
        return {"met": True, "not met": False}.get(self.outcome)


def decide_at_most(interval: Interval, limit: float, samples: int) -> Verdict:
    """ "met" when the whole interval is at or under ``limit``, "not met" when it is all
    above, else "undecided" with about how many more samples would shrink the half of the
    interval that crosses the limit to the median's distance from it."""
    if interval.high <= limit:
        return Verdict("met")
    if interval.low > limit:
        return Verdict("not met")
    gap = abs(limit - interval.median)
    if gap == 0:
        return Verdict("undecided")
    below = interval.median < limit
    half = interval.high - interval.median if below else interval.median - interval.low
    return Verdict("undecided", math.ceil(samples * (half / gap) ** 2) - samples)
