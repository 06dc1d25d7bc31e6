"""Confidence intervals for the studies, without SciPy.

Why these: a sweep repeats each grid point over a few seeds, so the mean of
a per-run metric gets a Student-t interval over the runs (the runs are
independent; with 3-10 seeds the normal 1.96 would be too narrow). A
proportion pooled over the trials of several runs (conflicted first
attempts out of all first attempts) is a ratio of sums whose trials are
**not** independent: within a run they share one history (a queue, a
failover), so the spread between seeds is larger than a binomial one. It
gets a cluster (ratio-estimator) Student-t interval with the run as the
cluster (:func:`ratio_ci`). The Wilson score interval (:func:`wilson`) is
kept for trials that are independent (within one run, for reference).
With fewer than two runs there is no spread to measure: the bounds are NaN,
never a zero-width band.

A metric that cannot be negative (a count, a latency, a size: every run's
value is >= 0) can still get a t interval reaching below 0 when a few runs
are skewed (hub_lost 0.33 [-1.10, 1.77] over 3 seeds). Its lower bound is
**clamped at 0** and the clamp is reported (:func:`mean_ci_nonneg`), rather
than a log-scale t interval (undefined at the zeros these counts often
hold) or a bootstrap (with 3-5 runs it has almost no resamples and is
narrower than the truth). Clamping keeps the coverage of the t interval:
the part removed holds values the metric cannot take.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

#: Two-sided 95% Student-t quantiles t_{0.975, df} for df = 1..30.
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042]  # fmt: skip


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom
    (table to 30, then the Cornish-Fisher expansion around 1.96)."""
    if df < 1:
        return math.nan
    if df <= 30:
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_ci(values: Iterable[float]) -> tuple[float, float, float, int]:
    """``(mean, low, high, n)``: the mean of the finite values, its 95%
    Student-t interval and how many finite values there were (NaN bounds
    for fewer than two: one run says nothing about the spread)."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    m = float(x.mean())
    if n == 1:
        return m, math.nan, math.nan, 1
    half = t975(n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
    return m, m - half, m + half, n


def mean_ci_nonneg(values: Iterable[float]) -> tuple[float, float, float, int, bool]:
    """:func:`mean_ci` for a metric that cannot be negative: the lower bound
    clamped at 0, and whether it was (``(mean, low, high, n, clamped)``)."""
    m, lo, hi, n = mean_ci(values)
    clamped = bool(lo < 0)  # False for NaN
    return m, (0.0 if clamped else lo), hi, n, clamped


def wilson(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float, float]:
    """``(p, low, high)``: a proportion and its 95% Wilson score interval."""
    if trials <= 0:
        return math.nan, math.nan, math.nan
    p = successes / trials
    d = 1 + z * z / trials
    c = (p + z * z / (2 * trials)) / d
    h = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / d
    return p, max(0.0, c - h), min(1.0, c + h)


def ratio_ci(successes: Iterable[float], trials: Iterable[float]) -> tuple[float, float, float, int]:
    """``(p, low, high, k)``: the pooled proportion ``sum(s) / sum(n)`` over
    ``k`` runs (clusters) with trials, and its 95% cluster-robust Student-t
    interval (ratio estimator: ``se^2 = k/(k-1) sum (s_i - p n_i)^2 /
    (sum n)^2``, t with k-1 degrees of freedom), clipped to [0, 1]. It
    widens with the spread between runs, which a pooled Wilson interval
    ignores. NaN bounds when fewer than two runs have trials."""
    pairs = [(float(a), float(b)) for a, b in zip(successes, trials, strict=True)
             if np.isfinite(a) and np.isfinite(b) and b > 0]
    k = len(pairs)
    if k == 0:
        return math.nan, math.nan, math.nan, 0
    s = np.array([a for a, _ in pairs])
    n = np.array([b for _, b in pairs])
    p = float(s.sum() / n.sum())
    if k < 2:
        return p, math.nan, math.nan, k
    se = math.sqrt(k / (k - 1) * float(((s - p * n) ** 2).sum())) / float(n.sum())
    half = t975(k - 1) * se
    return p, max(0.0, p - half), min(1.0, p + half), k
