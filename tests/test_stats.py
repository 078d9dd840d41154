"""The statistics against small cases worked out by hand.

For 0/1 outcomes the bootstrap distribution of the mean is exactly Binomial(n, k/n) / n, so a
percentile-bootstrap bound is a binomial quantile; the cases below keep every quantile far from a
jump of the binomial CDF, so 10,000 resamples land on it whatever the random stream.
"""

from __future__ import annotations

import pytest

from amr_dspy.stats import Interval, bootstrap_ci, mcnemar_exact, paired_bootstrap_ci, paired_test


@pytest.mark.parametrize(
    ("wins", "losses", "p"),
    [
        (0, 5, 2 / 32),  # 2 * P(X <= 0), X ~ Bin(5, 1/2)
        (5, 0, 2 / 32),  # symmetric
        (1, 9, 2 * 11 / 1024),  # 2 * (C(10,0) + C(10,1)) / 2^10
        (2, 0, 0.5),  # 2 * 1/4
        (3, 0, 0.25),  # 2 * 1/8
        (3, 3, 1.0),  # 2 * P(X <= 3), X ~ Bin(6, 1/2) = 2 * 42/64 > 1, capped
        (2, 1, 1.0),  # 2 * (1 + 3)/8 = 1
        (0, 1, 1.0),
        (0, 0, 1.0),  # no discordant task: no evidence either way
        (2, 10, 2 * 79 / 4096),  # 2 * (1 + 12 + 66) / 2^12
    ],
)
def test_mcnemar_exact_matches_the_binomial_tail(wins: int, losses: int, p: float) -> None:
    assert mcnemar_exact(wins, losses) == pytest.approx(p, abs=1e-15)


def test_mcnemar_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="counts"):
        mcnemar_exact(-1, 3)


def test_bootstrap_interval_of_three_passes_in_four() -> None:
    # resampled passes ~ Bin(4, 3/4): CDF 1/256 = .004 at 0, 13/256 = .051 at 1, 175/256 = .684 at 3
    interval = bootstrap_ci([True, True, True, False])
    assert interval == Interval(estimate=0.75, low=0.25, high=1.0, confidence=0.95)


def test_bootstrap_interval_of_ten_passes_in_twenty() -> None:
    # Bin(20, 1/2): CDF .021 at 5 and .058 at 6 (lower bound 6/20); .942 at 13 and .979 at 14 (upper 14/20)
    interval = bootstrap_ci([1] * 10 + [0] * 10)
    assert (interval.estimate, interval.low, interval.high) == pytest.approx((0.5, 0.3, 0.7))


def test_bootstrap_interval_at_the_edges_is_a_point() -> None:
    assert bootstrap_ci([1, 1, 1]) == Interval(estimate=1.0, low=1.0, high=1.0)
    assert bootstrap_ci([0]) == Interval(estimate=0.0, low=0.0, high=0.0)


def test_bootstrap_is_deterministic_and_narrows_with_confidence() -> None:
    values = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1, 1, 0, 1, 1]
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
    wide, narrow = bootstrap_ci(values, confidence=0.99), bootstrap_ci(values, confidence=0.5)
    assert wide.low < narrow.low <= narrow.estimate <= narrow.high < wide.high
    assert narrow.confidence == 0.5


@pytest.mark.parametrize(
    ("values", "kwargs", "match"),
    [([], {}, "non-empty"), ([1, 0], {"confidence": 1.0}, "confidence"), ([1], {"resamples": 0}, "resamples")],
)
def test_bootstrap_rejects_bad_input(values: list[int], kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        bootstrap_ci(values, **kwargs)


def test_paired_bootstrap_of_one_win_in_four_tasks() -> None:
    # differences [1, 0, 0, 0]: resampled wins ~ Bin(4, 1/4), CDF 81/256 = .316 at 0, 243/256 = .949 at 2,
    # 255/256 = .996 at 3, so the interval is [0, 3/4]; a loss mirrors it
    baseline, variant = [False, True, True, False], [True, True, True, False]
    assert paired_bootstrap_ci(baseline, variant) == Interval(estimate=0.25, low=0.0, high=0.75)
    assert paired_bootstrap_ci(variant, baseline) == Interval(estimate=-0.25, low=-0.75, high=0.0)


def test_paired_test_counts_discordant_tasks() -> None:
    baseline = [True, False, False, True, False, True, False, False]
    variant = [True, True, True, False, True, True, True, False]
    test = paired_test(baseline, variant)
    assert (test.n, test.wins, test.losses) == (8, 4, 1)
    assert test.p_value == pytest.approx(2 * (1 + 5) / 32)
    assert test.diff.estimate == pytest.approx(3 / 8)
    assert test.diff.low <= test.diff.estimate <= test.diff.high
    assert test.diff == paired_bootstrap_ci(baseline, variant)


def test_paired_outcomes_must_cover_the_same_tasks() -> None:
    with pytest.raises(ValueError, match="same tasks"):
        paired_test([True, False], [True])
