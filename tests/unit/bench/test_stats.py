"""The one percentile of every benchmark report: numpy's default definition, pinned."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.bench.stats import ms, percentile, rounded

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
