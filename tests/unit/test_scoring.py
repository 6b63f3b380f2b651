"""Scores against values computed by hand."""

from __future__ import annotations

import pytest

from gateway.scoring import auroc, brier, ece, macro_f1, reliability_bins, top_label_brier


def test_macro_f1_weights_classes_equally() -> None:
    assert macro_f1(["a", "b"], ["a", "b"]) == 1.0
    # always "a": class a has F1 2/3 (precision 1/2, recall 1), class b has 0
    assert macro_f1(["a", "b"], ["a", "a"]) == pytest.approx((2 / 3) / 2)


def test_ece_weighs_each_bins_gap_by_its_size() -> None:
    # bin 14 (0.95): 2 items, all right, gap 0.05; bin 8 (0.55): 2 items, half right, gap 0.05
    assert ece([0.95, 0.95, 0.55, 0.55], [True, True, True, False]) == pytest.approx(0.05)
    # 0.9 accurate at 0.9 confidence: calibrated, whatever the spread of the rest
    assert ece([0.9] * 10, [True] * 9 + [False]) == pytest.approx(0.0)
    # a constant confidence 0.9 against 85% accuracy scores 0.05 (the example)
    assert ece([0.9] * 20, [True] * 17 + [False] * 3) == pytest.approx(0.05)


def test_reliability_bins_are_equal_width_and_one_joins_the_top_bin() -> None:
    bins = reliability_bins([0.0, 1 / 15, 0.999, 1.0], [False, True, True, False])
    assert len(bins) == 15 and (bins[0].lower, bins[0].upper) == (0.0, 1 / 15)
    assert [b.count for b in bins] == [1, 1] + [0] * 12 + [2]
    assert bins[14].accuracy == 0.5 and bins[14].confidence == pytest.approx(0.9995)
    assert bins[5].confidence is None and bins[5].accuracy is None


def test_brier_scores() -> None:
    # (0.3² + 0.2² + 0.1²) and (0.3² + 0.7² + 0.4²), averaged
    assert brier([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4]], [0, 1]) == pytest.approx((0.14 + 0.74) / 2)
    assert top_label_brier([0.7, 0.4], [True, False]) == pytest.approx((0.09 + 0.16) / 2)


def test_auroc_ranks_right_answers_above_wrong_ones() -> None:
    # right answers ranked 4 and 2 of 4: (6 - 3) / (2 * 2)
    assert auroc([0.9, 0.8, 0.7, 0.6], [True, False, True, False]) == 0.75
    # ties share their rank: the right 0.5 gets 2.5 -> (2.5 + 4 - 3) / 4
    assert auroc([0.5, 0.5, 0.9, 0.1], [True, False, True, False]) == 0.875
    assert auroc([0.9] * 4, [True, False, True, True]) == 0.5  # a constant says nothing
    assert auroc([0.2, 0.9], [False, True]) == 1.0
    assert auroc([0.9, 0.8], [True, True]) is None
