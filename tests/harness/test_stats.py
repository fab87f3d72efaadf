"""Paired statistics on hand-made inputs whose answers are known in closed form."""

import math

import pytest

from harness.stats import mean_std, paired_comparison


def test_interval_and_p_value_match_the_textbook_paired_t():
    # differences 1, 2, 3: mean 2, sd 1, sem 1/sqrt(3); t_{0.975, 2} = 4.302652729911275
    a = {1: 11.0, 2: 22.0, 3: 33.0}
    b = {1: 10.0, 2: 20.0, 3: 30.0}
    result = paired_comparison(a, b)
    assert result.seeds == (1, 2, 3)
    assert result.differences == (1.0, 2.0, 3.0)
    assert result.mean == pytest.approx(2.0)
    assert result.std == pytest.approx(1.0)
    half = 4.302652729911275 / math.sqrt(3)
    assert (result.low, result.high) == pytest.approx((2 - half, 2 + half))
    # t = 2 / (1 / sqrt 3) = 3.4641; two-sided p with 2 df = 0.07418
    assert result.p_value == pytest.approx(0.0741799, abs=1e-6)
    assert not result.distinguishable
    assert result.verdict() == "not distinguishable at 3 seeds"


def test_only_common_seeds_are_paired_and_sign_gives_the_winner():
    a = {1: 5.0, 2: 6.0, 3: 5.5, 4: 6.5, 9: 100.0}
    b = {1: 1.0, 2: 1.5, 3: 1.2, 4: 1.8, 7: -100.0}
    result = paired_comparison(a, b)
    assert result.seeds == (1, 2, 3, 4)
    assert result.distinguishable and result.low > 0
    assert result.verdict("SPAL", "budget 0") == "distinguishable: SPAL better"
    flipped = paired_comparison(b, a)
    assert flipped.high < 0
    assert flipped.verdict("SPAL", "budget 0") == "distinguishable: budget 0 better"


def test_degenerate_cases():
    same = paired_comparison({1: 3.0, 2: 4.0}, {1: 1.0, 2: 2.0})
    assert (same.low, same.high, same.p_value) == (2.0, 2.0, 0.0)
    assert same.distinguishable
    one = paired_comparison({1: 3.0}, {1: 1.0})
    assert one.n == 1 and math.isnan(one.low) and not one.distinguishable
    assert "needs 2 or more" in one.verdict()
    with pytest.raises(ValueError, match="no common seed"):
        paired_comparison({1: 1.0}, {2: 1.0})


def test_mean_std():
    assert mean_std([2.0, 4.0, 6.0]) == (4.0, 2.0)
    mean, std = mean_std([5.0])
    assert mean == 5.0 and math.isnan(std)
