"""Small-sample statistics for pass@1: percentile-bootstrap intervals and paired tests against a baseline.

Every function is deterministic: the bootstrap draws from ``numpy.random.default_rng(seed)``, so the same
outcomes give the same interval on every machine and every run.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from math import comb

import numpy as np
from pydantic import BaseModel

__all__ = ["Interval", "PairedTest", "bootstrap_ci", "paired_bootstrap_ci", "mcnemar_exact", "paired_test"]

DEFAULT_RESAMPLES = 10_000


class Interval(BaseModel):
    """A point estimate and its two-sided confidence interval."""

    estimate: float
    low: float
    high: float
    confidence: float = 0.95


class PairedTest(BaseModel):
    """A variant against the baseline on the same tasks: who wins the tasks where they disagree."""

    n: int  # tasks both were run on
    wins: int  # the variant passes, the baseline fails
    losses: int  # the baseline passes, the variant fails
    diff: Interval  # variant pass@1 minus baseline pass@1, paired-bootstrap interval
    p_value: float  # exact McNemar (two-sided binomial test on the discordant pairs)


def bootstrap_ci(
    values: Sequence[float | bool],
    *,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Percentile-bootstrap interval for the mean of ``values`` (pass@1 when they are per-task outcomes).

    The bounds are empirical quantiles of the resampled means (the smallest mean whose share of
    resamples at or below it reaches the quantile), so they are always means a resample can take.
    """
    data = np.asarray(values, dtype=float)
    if data.ndim != 1 or data.size == 0:
        raise ValueError("bootstrap_ci needs a non-empty, one-dimensional sequence of values")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, not {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, not {resamples}")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2], method="inverted_cdf")
    return Interval(estimate=float(data.mean()), low=float(low), high=float(high), confidence=confidence)


def paired_bootstrap_ci(
    baseline: Sequence[bool],
    variant: Sequence[bool],
    *,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Interval for ``mean(variant) - mean(baseline)`` resampling tasks, so each task keeps both its outcomes."""
    _check_paired(baseline, variant)
    diffs = [float(v) - float(b) for b, v in zip(baseline, variant, strict=True)]
    return bootstrap_ci(diffs, confidence=confidence, resamples=resamples, seed=seed)


def mcnemar_exact(wins: int, losses: int) -> float:
    """Two-sided exact McNemar p-value: under no difference each discordant task is a fair coin flip.

    ``p = min(1, 2 * P(X <= min(wins, losses)))`` with ``X ~ Binomial(wins + losses, 1/2)``; computed
    with exact fractions, so small cases match a hand calculation to the last bit.
    """
    if wins < 0 or losses < 0:
        raise ValueError(f"wins and losses are counts, not {wins} and {losses}")
    n = wins + losses
    if n == 0:
        return 1.0
    tail = Fraction(sum(comb(n, k) for k in range(min(wins, losses) + 1)), 2**n)
    return float(min(Fraction(1), 2 * tail))


def paired_test(
    baseline: Sequence[bool],
    variant: Sequence[bool],
    *,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> PairedTest:
    """The variant against the baseline on the same tasks: wins, losses, the difference's interval, McNemar's p."""
    _check_paired(baseline, variant)
    wins = sum(bool(v) and not bool(b) for b, v in zip(baseline, variant, strict=True))
    losses = sum(bool(b) and not bool(v) for b, v in zip(baseline, variant, strict=True))
    return PairedTest(
        n=len(baseline),
        wins=wins,
        losses=losses,
        diff=paired_bootstrap_ci(baseline, variant, confidence=confidence, resamples=resamples, seed=seed),
        p_value=mcnemar_exact(wins, losses),
    )


def _check_paired(baseline: Sequence[bool], variant: Sequence[bool]) -> None:
    if len(baseline) != len(variant):
        raise ValueError(f"paired outcomes need the same tasks: {len(baseline)} baseline vs {len(variant)} variant")
