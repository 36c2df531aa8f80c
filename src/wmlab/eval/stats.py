"""Is one method's set of runs better than another's? Two small-sample statistics over per-run scores.

With a handful of seeds and noisy evaluations a difference of means says little by itself. Both statistics here
take one score per run (e.g. each run's success rate averaged over its evaluations) and make no assumption about
their distribution:

- :func:`probability_of_improvement`: the chance that a random run of ``x`` scores above a random run of ``y``
  (ties count half), the Mann-Whitney U statistic over ``len(x)·len(y)``; 0.5 is no difference.
- :func:`permutation_p_value`: how often relabelling the pooled runs at random puts the groups at least as far
  apart (mean of ``x`` minus mean of ``y``) as they are; one-sided, exact over every relabelling when there
  are few of them.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import Sequence


def probability_of_improvement(x: Sequence[float], y: Sequence[float]) -> float:
    """P(a run of ``x`` beats a run of ``y``), ties counting half."""
    if not x or not y:
        raise ValueError("probability_of_improvement needs at least one score on each side")
    wins = sum((a > b) + 0.5 * (a == b) for a in x for b in y)
    return wins / (len(x) * len(y))


def permutation_p_value(x: Sequence[float], y: Sequence[float], limit: int = 100_000, seed: int = 0) -> float:
    """One-sided p-value of ``mean(x) > mean(y)``: the share of the splits of the pooled scores into groups of
    ``len(x)`` and ``len(y)`` whose gap in means is at least the observed one. Exact when there are at most
    ``limit`` splits (70 for 4 runs against 4), else over ``limit`` random splits (then never 0)."""
    if not x or not y:
        raise ValueError("permutation_p_value needs at least one score on each side")
    pooled, n, m = [float(v) for v in (*x, *y)], len(x), len(y)
    total = sum(pooled)

    def gap(group_sum: float) -> float:  # mean of a group of n minus the mean of the rest
        return group_sum / n - (total - group_sum) / m

    observed = gap(sum(pooled[:n])) - 1e-12  # a split as far apart counts, whatever the order of the float sums
    if math.comb(n + m, n) <= limit:
        gaps = [gap(sum(group)) for group in itertools.combinations(pooled, n)]
        return sum(g >= observed for g in gaps) / len(gaps)
    rng = random.Random(seed)
    hits = sum(gap(sum(rng.sample(pooled, n))) >= observed for _ in range(limit))
    return (hits + 1) / (limit + 1)
