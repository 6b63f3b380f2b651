"""The one percentile of every benchmark report: numpy's default definition, pinned; and
the bootstrap interval and verdict that decide a latency target from paired samples."""

from __future__ import annotations

import random

import numpy as np
import pytest

from gateway_tools.bench.stats import (
    Interval,
    bootstrap_median,
    decide_at_most,
    ms,
    percentile,
    rounded,
)

SAMPLES = [
    [7.0],
    [1.0, 3.0],
    [0.1] * 9 + [1.0],
    [5.0, 1.0, 4.0, 2.0, 3.0],  # unsorted
    [0.3, 0.3, 0.9, 2.5, 0.01, 7.2, 1.1],
]


@pytest.mark.parametrize("values", SAMPLES)
@pytest.mark.parametrize("q", [0.0, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0])
def test_percentile_is_numpys_linear_method(values: list[float], q: float) -> None:
    expected = float(np.percentile(values, 100 * q, method="linear"))
    assert percentile(values, q) == pytest.approx(expected, rel=1e-12)


def test_pinned_values_interpolate_between_ranks() -> None:
    assert percentile([1.0, 3.0], 0.5) == 2.0  # nearest rank would give 1.0 or 3.0
    assert percentile([0.1] * 9 + [1.0], 0.95) == pytest.approx(0.595)
    assert percentile([10.0, 20.0, 30.0, 40.0], 0.95) == pytest.approx(38.5)


def test_no_samples_no_percentile_and_q_is_a_fraction() -> None:
    assert percentile([], 0.5) is None
    with pytest.raises(ValueError, match="q must be in"):
        percentile([1.0], 95)


def test_report_rounding_keeps_missing_values_missing() -> None:
    assert ms(0.12345) == 123.5 and ms(0.12345, 2) == 123.45 and ms(None) is None
    assert rounded(1.23456, 2) == 1.23 and rounded(None, 2) is None


def test_bootstrap_interval_holds_a_known_shift_and_is_seeded() -> None:
    rng = random.Random(7)
    gateway = [0.170 + rng.gauss(0, 0.02) for _ in range(400)]
    bare = [g - 0.003 + rng.gauss(0, 0.004) for g in gateway]  # the gateway adds 3 ms
    diffs = [1000 * (g - b) for g, b in zip(gateway, bare, strict=True)]
    interval = bootstrap_median(diffs, resamples=2000, seed=0)
    assert interval.low < 3.0 < interval.high
    assert interval.low <= interval.median <= interval.high
    assert interval.high - interval.low < 2.0  # 400 pairs pin the median to about +-0.5 ms
    assert bootstrap_median(diffs, resamples=2000, seed=0) == interval
    assert bootstrap_median(diffs, resamples=2000, seed=1) != interval


def test_identical_pairs_give_a_zero_interval() -> None:
    latencies = [0.15, 0.16, 0.2, 0.17, 0.31]
    diffs = [a - b for a, b in zip(latencies, latencies, strict=True)]
    interval = bootstrap_median(diffs, resamples=500)
    assert (interval.median, interval.low, interval.high) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_median([])


def interval(median: float, low: float, high: float) -> Interval:
    return Interval(median, low, high, confidence=0.95, resamples=2000, seed=0)


def test_verdict_met_not_met_or_undecided_with_the_pairs_it_needs() -> None:
    assert decide_at_most(interval(2.0, 1.0, 4.9), 5.0, 400).outcome == "met"
    assert decide_at_most(interval(2.0, 1.0, 5.0), 5.0, 400).met is True  # at the limit
    missed = decide_at_most(interval(8.0, 5.1, 10.0), 5.0, 400)
    assert missed.outcome == "not met" and missed.met is False and missed.more_samples is None
    # Median 1 ms under the limit, the upper half 3 ms wide: it must shrink 3x, so 9x the
    # pairs in all (width goes as one over root n): 3,600, i.e. 3,200 more.
    below = decide_at_most(interval(4.0, 2.0, 7.0), 5.0, 400)
    assert below.outcome == "undecided" and below.met is None and below.more_samples == 3200
    # Median over the limit: the lower half (1.5 ms) must shrink to 1 ms: 2.25x the pairs.
    assert decide_at_most(interval(6.0, 4.5, 7.0), 5.0, 400).more_samples == 500
    assert decide_at_most(interval(5.0, 4.0, 6.0), 5.0, 400).more_samples is None  # on it
