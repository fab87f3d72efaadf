"""Paired comparisons over seeds: the one place where the harness turns runs into verdicts.

Two variants run with the same seeds share the data, the initial weights and the first label phase, so their
difference per seed removes most of the seed-to-seed spread. Every comparison the report or the CI check makes
(SPAL vs no labels, DUS vs random, an ablation vs full SPAL) is therefore a paired difference ``a - b`` over the
seeds both have, with a Student-t 95 % interval and a two-sided paired t-test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from scipy import stats as scipy_stats

__all__ = ["PairedComparison", "paired_comparison", "mean_std"]


@dataclass(frozen=True)
class PairedComparison:
    """``a - b`` over the seeds both sides have.

    Attributes:
        seeds: the common seeds, sorted.
        differences: ``a[s] - b[s]`` for each of ``seeds``.
        mean, std: mean and sample standard deviation of the differences (std is ``nan`` for one seed).
        low, high: the two-sided ``level`` Student-t interval of the mean difference (``nan`` below two seeds).
        p_value: two-sided paired t-test of "mean difference = 0" (``nan`` below two seeds; 0 when every
            difference is the same non-zero number, 1 when all are zero).
        level: the interval's confidence level.
    """

    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    mean: float
    std: float
    low: float
    high: float
    p_value: float
    level: float

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def distinguishable(self) -> bool:
        """True when the interval excludes 0 (equivalently, ``p < 1 - level``)."""
        return self.n >= 2 and (self.low > 0 or self.high < 0)

    def verdict(self, better: str = "a", worse: str = "b") -> str:
        """The comparison in words, e.g. ``"distinguishable: a better"``."""
        if self.n < 2:
            return f"not distinguishable at {self.n} seed{'s' if self.n != 1 else ''} (needs 2 or more)"
        if not self.distinguishable:
            return f"not distinguishable at {self.n} seeds"
        return f"distinguishable: {better if self.mean > 0 else worse} better"


def mean_std(values: list[float] | tuple[float, ...]) -> tuple[float, float]:
    """Mean and sample standard deviation (``nan`` std for fewer than two values)."""
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def paired_comparison(a: Mapping[int, float], b: Mapping[int, float], level: float = 0.95) -> PairedComparison:
    """Compare ``a`` with ``b`` (seed -> metric) on the seeds both have.

    Raises:
        ValueError: no seed in common, or ``level`` outside (0, 1).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    seeds = tuple(sorted(set(a) & set(b)))
    if not seeds:
        raise ValueError(f"no common seed: a has {sorted(a)}, b has {sorted(b)}")
    diffs = tuple(float(a[s]) - float(b[s]) for s in seeds)
    mean, std = mean_std(diffs)
    n = len(diffs)
    if n < 2:
        return PairedComparison(seeds, diffs, mean, std, math.nan, math.nan, math.nan, level)
    if std == 0:
        # Every seed moved by the same amount: the interval is that one number.
        p_value = 1.0 if mean == 0 else 0.0
        return PairedComparison(seeds, diffs, mean, std, mean, mean, p_value, level)
    sem = std / math.sqrt(n)
    t = float(scipy_stats.t.ppf(0.5 + level / 2, df=n - 1))
    p_value = float(2 * scipy_stats.t.sf(abs(mean / sem), df=n - 1))
    return PairedComparison(seeds, diffs, mean, std, mean - t * sem, mean + t * sem, p_value, level)
