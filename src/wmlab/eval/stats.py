"""Is one method's set of runs better than another's? Two small-sample statistics over per-run scores.

With a handful of seeds and noisy evaluations a difference of means says little by itself. Both statistics here
take one score per run (e.g. each run's success rate averaged over its evaluations) and make no assumption about
their distribution:

- :func:`probability_of_improvement`: the chance that a random run of ``x`` scores above a random run of ``y``
  (ties count half), the Mann-Whitney U statistic over ``len(x)·len(y)``; 0.5 is no difference.
- :func:`permutation_p_value`: how often relabelling the pooled runs at random puts the groups at least as far
  apart (mean of ``x`` minus mean of ``y``) as they are; one-sided, exact over every relabelling when there
  are few of them.

Their ``stratified_`` forms take several ``(x, y)`` pairs, one per stratum (e.g. per task, as APV's and PreLAR's
results are means over tasks): runs are compared and relabelled only within their stratum, and the gap is the
mean over strata of each stratum's gap in means.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import Sequence


def probability_of_improvement(x: Sequence[float], y: Sequence[float]) -> float:
    """P(a run of ``x`` beats a run of ``y``), ties counting half."""
    return stratified_probability_of_improvement([(x, y)])


def permutation_p_value(x: Sequence[float], y: Sequence[float], limit: int = 100_000, seed: int = 0) -> float:
    """One-sided p-value of ``mean(x) > mean(y)``: the share of the splits of the pooled scores into groups of
    ``len(x)`` and ``len(y)`` whose gap in means is at least the observed one. Exact when there are at most
    ``limit`` splits (70 for 4 runs against 4), else over ``limit`` random splits (then never 0)."""
    return stratified_permutation_p_value([(x, y)], limit, seed)


def stratified_probability_of_improvement(strata: Sequence[tuple[Sequence[float], Sequence[float]]]) -> float:
    """P(a run of ``x`` beats a run of ``y`` of the same stratum), ties counting half: each stratum (e.g. a task)
    is one ``(x, y)`` pair of score lists, and runs are compared only within their stratum, every pair alike."""
    wins = pairs = 0.0
    for x, y in _checked(strata, "probability_of_improvement"):
        wins += sum((a > b) + 0.5 * (a == b) for a in x for b in y)
        pairs += len(x) * len(y)
    return wins / pairs


def stratified_permutation_p_value(strata: Sequence[tuple[Sequence[float], Sequence[float]]],
                                   limit: int = 100_000, seed: int = 0) -> float:
    """One-sided p-value of ``x`` above ``y`` over several strata (e.g. tasks, each one ``(x, y)`` pair of score
    lists): the statistic is the gap in means averaged over the strata, each stratum weighing alike whatever its
    number of runs, and the null relabels runs only within their stratum (a task's scale never leaks into
    another's). Exact when the strata's splits combine to at most ``limit`` relabellings, else over ``limit``
    random ones (then never 0). With one stratum this is the two-sample permutation test."""
    groups = []
    for x, y in _checked(strata, "permutation_p_value"):
        pooled = [float(v) for v in (*x, *y)]
        groups.append((pooled, len(x), len(y), sum(pooled)))

    def gap(group_sum: float, n: int, m: int, total: float) -> float:  # mean of a group of n minus the rest's
        return group_sum / n - (total - group_sum) / m

    k = len(groups)
    # A relabelling as far apart counts, whatever the order of the float sums.
    observed = sum(gap(sum(pooled[:n]), n, m, total) for pooled, n, m, total in groups) / k - 1e-12
    if math.prod(math.comb(n + m, n) for _, n, m, _ in groups) <= limit:
        gaps = [[gap(sum(split), n, m, total) for split in itertools.combinations(pooled, n)]
                for pooled, n, m, total in groups]
        hits = sum(sum(combo) / k >= observed for combo in itertools.product(*gaps))
        return hits / math.prod(len(g) for g in gaps)
    rng = random.Random(seed)
    hits = sum(sum(gap(sum(rng.sample(pooled, n)), n, m, total) for pooled, n, m, total in groups) / k >= observed
               for _ in range(limit))
    return (hits + 1) / (limit + 1)


def _checked(strata: Sequence[tuple[Sequence[float], Sequence[float]]], name: str) -> Sequence:
    if not strata:
        raise ValueError(f"{name} needs at least one stratum")
    for x, y in strata:
        if not x or not y:
            raise ValueError(f"{name} needs at least one score on each side")
    return strata
