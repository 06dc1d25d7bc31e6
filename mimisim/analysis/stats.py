"""Confidence intervals for the studies, without SciPy.

Why these two: a sweep repeats each grid point over a few seeds, so the
mean of a per-run metric gets a Student-t interval (the runs are
independent; with 3-10 seeds the normal 1.96 would be too narrow). A
probability pooled over many trials (conflicts out of commit attempts) gets
a Wilson score interval, which stays inside [0, 1] and behaves at 0 and 1.
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
    """``(mean, low, high, n)``: the mean of the finite values and its 95%
    Student-t interval (low = high = mean for a single value; NaN if none)."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    m = float(x.mean())
    if n == 1:
        return m, m, m, 1
    half = t975(n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
    return m, m - half, m + half, n


def wilson(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float, float]:
    """``(p, low, high)``: a proportion and its 95% Wilson score interval."""
    if trials <= 0:
        return math.nan, math.nan, math.nan
    p = successes / trials
    d = 1 + z * z / trials
    c = (p + z * z / (2 * trials)) / d
    h = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / d
    return p, max(0.0, c - h), min(1.0, c + h)
