"""Seed statistics for tables, ``best``, ``status`` and the search summary (scipy.stats).

Contract: pure functions of plain numbers; nothing here reads files.

* :func:`summary`: mean, sample std (ddof=1), n and the t-based confidence interval of
  the mean, ``mean ± t(1 - a/2, n - 1) · std / √n`` (none for n < 2).
* :func:`compare`: a row's values against the baseline row's. When both give exactly the
  same seeds (each once, n ≥ 2) the trials are paired by seed and the mean per-seed
  difference is tested (paired t-test, ``df = n - 1``); otherwise Welch's t-test
  (Welch–Satterthwaite ``df``). Both two-sided; the interval of the difference comes
  from the same t distribution. :func:`one_sample` tests a row against a fixed value
  (delta_m against the single-task baselines, which are fixed numbers).
* :func:`holm`: Holm's step-down adjustment of a family of p-values.
* :func:`seeds_needed`: the smallest number of seeds (pairs for the paired test, seeds per
  row for Welch's) for which the same two-sided test at ``alpha`` reaches ``power`` if the
  true difference and spread were the observed ones. Exact: power from the noncentral t
  distribution, ``P(|T| > t(1 - a/2, df))`` with ``T ~ t'(df, δ)``, paired
  ``df = n - 1, δ = diff / sd_diff · √n``, Welch ``df = (n - 1)(s1² + s2²)² / (s1⁴ + s2⁴),
  δ = diff / √((s1² + s2²) / n)``. The normal approximation
  ``n ≈ ((z(1 - a/2) + z(power)) · sd / diff)²`` (``sd² = s1² + s2²`` for Welch) is a
  lower bound the search starts from. The observed difference is itself noisy, so the
  figure is a guide to the order of magnitude, not a promise.
* Zero spread (every seed gave the same value, or every per-seed difference is the same)
  leaves a t statistic undefined: such a comparison is reported, not tested.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
"""Two-sided significance level (after Holm's adjustment)."""
LEVEL = 0.95
"""Confidence level of every interval."""
POWER = 0.8
N_MAX = 1000
"""``seeds_needed`` searches up to this many seeds; beyond it returns ``inf``."""
_REL_TOL = 1e-9


@dataclass
class Summary:
    """Mean, sample std, n and the confidence interval of the mean of some values."""

    mean: float
    std: float
    n: int
    lo: float
    hi: float


@dataclass
class Comparison:
    """A row against the baseline: the test used, the difference (row − baseline) with
    its interval, the p-value (raw and Holm-adjusted) and the seeds a test would need."""

    test: str
    """``paired``, ``welch``, ``one-sample`` or ``""`` (not tested: ``reason`` says why)."""
    diff: float
    lo: float = math.nan
    hi: float = math.nan
    p: float = math.nan
    df: float = math.nan
    n_needed: float = math.nan
    """Seeds (pairs, or per row) for 80% power; ``inf`` when none up to :data:`N_MAX`
    (or the difference is 0); NaN when not tested."""
    reason: str = ""
    p_holm: float = math.nan
    significant: bool = False

    @property
    def tested(self) -> bool:
        return bool(self.test) and not math.isnan(self.p)


def _clean(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray([float(v) for v in values], dtype=float)
    return arr[~np.isnan(arr)]


def _no_spread(sd: float, scale: np.ndarray) -> bool:
    """``sd`` is zero up to rounding of values of size ``scale``."""
    ref = float(np.max(np.abs(scale))) if scale.size else 0.0
    return not sd > _REL_TOL * max(ref, 1e-300)


def t_interval(mean: float, se: float, df: float, level: float = LEVEL) -> tuple[float, float]:
    """``mean ± t(1 - (1 - level)/2, df) · se`` (NaN without ``df`` > 0)."""
    if not df > 0 or math.isnan(se):
        return math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return mean - half, mean + half


def summary(values: Sequence[float], level: float = LEVEL) -> Summary:
    """Mean, std (ddof=1), n and the t interval of the mean of ``values`` (NaN skipped)."""
    arr = _clean(values)
    n = int(arr.size)
    if n == 0:
        return Summary(math.nan, math.nan, 0, math.nan, math.nan)
    mean = float(arr.mean())
    if n == 1:
        return Summary(mean, math.nan, 1, math.nan, math.nan)
    sd = float(arr.std(ddof=1))
    lo, hi = t_interval(mean, sd / math.sqrt(n), n - 1, level)
    return Summary(mean, sd, n, lo, hi)


def _power_integral(nc: float, df: float, crit: float) -> float:
    """``P(|T| > crit)`` for ``T = (Z + nc) / √(V/df)``, ``V ~ χ²(df)``, by integrating the
    normal tails over V: the fallback where scipy's noncentral t is not finite."""
    from scipy import integrate

    def tails(v: float) -> float:
        s = crit * math.sqrt(v / df)
        return (stats.norm.cdf(nc - s) + stats.norm.cdf(-nc - s)) * stats.chi2.pdf(v, df)

    lo, hi = stats.chi2.ppf([1e-12, 1 - 1e-12], df)
    return float(integrate.quad(tails, lo, hi, limit=200, points=[df])[0])


def _power(nc: np.ndarray, df: np.ndarray, alpha: float) -> np.ndarray:
    """Power of a two-sided t-test: ``P(|T| > t(1 - alpha/2, df))``, ``T ~ t'(df, nc)``
    (scipy's noncentral t; :func:`_power_integral` where it is not finite)."""
    nc, df = (np.ravel(x) for x in np.broadcast_arrays(np.asarray(nc, dtype=float), np.asarray(df, dtype=float)))
    crit = stats.t.ppf(1 - alpha / 2, df)
    with np.errstate(all="ignore"):
        upper = np.asarray(stats.nct.sf(crit, df, nc), dtype=float)
        lower = np.asarray(stats.nct.cdf(-crit, df, nc), dtype=float)
    # scipy's lower tail turns NaN for large nc (seen from nc ≈ 7.5); it is at most
    # P(Z + nc < 0) = Φ(-nc) < 1e-12 there, so 0.
    lower = np.where(np.isnan(lower) & (np.abs(nc) >= 7.0) & (nc > 0), 0.0, lower)
    out = upper + lower
    bad = ~np.isfinite(out) | (out < 0) | (out > 1)
    for i in np.nonzero(bad)[0]:
        out[i] = _power_integral(float(nc[i]), float(df[i]), float(crit[i]))
    return out


def power_paired(n: int, diff: float, sd: float, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired (or one-sample) t-test with ``n`` pairs."""
    return float(_power(np.asarray(abs(diff) / sd * math.sqrt(n)), np.asarray(n - 1.0), alpha)[0])


def power_welch(n: int, diff: float, sd1: float, sd2: float, alpha: float = ALPHA) -> float:
    """Power of the two-sided Welch test with ``n`` seeds in each row."""
    var = sd1 ** 2 + sd2 ** 2
    df = (n - 1.0) * var ** 2 / (sd1 ** 4 + sd2 ** 4)
    return float(_power(np.asarray(abs(diff) / math.sqrt(var / n)), np.asarray(df), alpha)[0])


def normal_n(diff: float, sd: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The normal approximation ``((z(1 - alpha/2) + z(power)) · sd / diff)²`` (not rounded)."""
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float((z * sd / diff) ** 2)


def seeds_needed(diff: float, sd1: float, sd2: float | None = None, alpha: float = ALPHA,
                 power: float = POWER) -> float:
    """Smallest n ≥ 2 whose power reaches ``power``: paired/one-sample when ``sd2`` is None
    (``sd1`` = std of the per-seed differences), else Welch with n seeds per row.
    ``inf`` for a zero difference or beyond :data:`N_MAX`; NaN without a spread."""
    sds = [sd1] if sd2 is None else [sd1, sd2]
    if any(math.isnan(s) for s in sds) or math.isnan(diff):
        return math.nan
    var = sum(s ** 2 for s in sds)
    if not var > 0:
        return math.nan
    if diff == 0:
        return math.inf
    # The t-test has less power than the z-test at the same n: the normal n is a lower
    # bound, so start just below it (and give up at once when it is beyond N_MAX).
    approx = normal_n(diff, math.sqrt(var), alpha, power)
    if approx > N_MAX:
        return math.inf
    start = max(2, int(math.floor(approx)) - 1)
    step = 16
    while start <= N_MAX:
        ns = np.arange(start, min(start + step, N_MAX + 1), dtype=float)
        if sd2 is None:
            pw = _power(abs(diff) / sd1 * np.sqrt(ns), ns - 1, alpha)
        else:
            df = (ns - 1) * var ** 2 / (sd1 ** 4 + sd2 ** 4)
            pw = _power(abs(diff) / np.sqrt(var / ns), df, alpha)
        hit = np.nonzero(pw >= power)[0]
        if hit.size:
            return float(ns[hit[0]])
        start += step
        step *= 2
    return math.inf


def _two_sided(t: float, df: float) -> float:
    """Two-sided p of a t statistic (what ``scipy.stats.ttest_rel``/``ttest_ind(equal_var=False)``
    /``ttest_1samp`` return for the same t and df; the tests check it against them)."""
    return float(2 * stats.t.sf(abs(t), df))


def _paired_seeds(seeds: Sequence[object], base_seeds: Sequence[object]) -> bool:
    if any(s is None for s in [*seeds, *base_seeds]):
        return False
    return (len(set(seeds)) == len(seeds) and len(set(base_seeds)) == len(base_seeds)
            and set(seeds) == set(base_seeds) and len(seeds) >= 2)


def compare(values: Sequence[float], seeds: Sequence[object], base_values: Sequence[float],
            base_seeds: Sequence[object], alpha: float = ALPHA, power: float = POWER) -> Comparison:
    """``values`` (one per trial, seed ``seeds[i]``) against the baseline row's. NaN
    values are dropped with their seeds before the choice of test."""
    keep = [(float(v), s) for v, s in zip(values, seeds) if not math.isnan(float(v))]
    base = [(float(v), s) for v, s in zip(base_values, base_seeds) if not math.isnan(float(v))]
    a = np.asarray([v for v, _ in keep])
    b = np.asarray([v for v, _ in base])
    if a.size == 0 or b.size == 0:
        return Comparison("", math.nan, reason="no value")
    diff = float(a.mean() - b.mean())
    if _paired_seeds([s for _, s in keep], [s for _, s in base]):
        mine, theirs = {s: v for v, s in keep}, {s: v for v, s in base}
        order = list(mine)
        x, y = np.asarray([mine[s] for s in order]), np.asarray([theirs[s] for s in order])
        n = x.size
        sd = float((x - y).std(ddof=1))
        if _no_spread(sd, np.concatenate([a, b])):
            return Comparison("paired", diff, reason="no spread in the per-seed differences")
        se = sd / math.sqrt(n)
        lo, hi = t_interval(diff, se, n - 1)
        return Comparison("paired", diff, lo, hi, _two_sided(diff / se, n - 1), n - 1.0,
                          seeds_needed(diff, sd, None, alpha, power))
    if a.size < 2 or b.size < 2:
        return Comparison("welch", diff, reason="fewer than 2 seeds in a row")
    s1, s2 = float(a.std(ddof=1)), float(b.std(ddof=1))
    v1, v2 = s1 ** 2 / a.size, s2 ** 2 / b.size
    if _no_spread(math.sqrt(v1 + v2), np.concatenate([a, b])):
        return Comparison("welch", diff, reason="no spread in either row")
    df = (v1 + v2) ** 2 / (v1 ** 2 / (a.size - 1) + v2 ** 2 / (b.size - 1))
    lo, hi = t_interval(diff, math.sqrt(v1 + v2), df)
    return Comparison("welch", diff, lo, hi, _two_sided(diff / math.sqrt(v1 + v2), df), float(df),
                      seeds_needed(diff, s1, s2, alpha, power))


def one_sample(values: Sequence[float], value: float = 0.0, alpha: float = ALPHA,
               power: float = POWER) -> Comparison:
    """``values`` against the fixed number ``value`` (one-sample t-test)."""
    a = _clean(values)
    if a.size == 0:
        return Comparison("", math.nan, reason="no value")
    diff = float(a.mean() - value)
    if a.size < 2:
        return Comparison("one-sample", diff, reason="fewer than 2 seeds")
    sd = float(a.std(ddof=1))
    if _no_spread(sd, a):
        return Comparison("one-sample", diff, reason="no spread")
    se = sd / math.sqrt(a.size)
    lo, hi = t_interval(diff, se, a.size - 1)
    return Comparison("one-sample", diff, lo, hi, _two_sided(diff / se, a.size - 1), a.size - 1.0,
                      seeds_needed(diff, sd, None, alpha, power))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order; NaN stays NaN and is not
    counted in the family: the k-th smallest of m p-values becomes
    ``max_{j ≤ k} min(1, (m - j + 1) · p_(j))``."""
    p = np.asarray([float(x) for x in pvalues], dtype=float)
    out = np.full(p.shape, math.nan)
    idx = np.nonzero(~np.isnan(p))[0]
    m = idx.size
    if m == 0:
        return out.tolist()
    order = idx[np.argsort(p[idx], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out.tolist()


def adjust(comparisons: Sequence[Comparison], alpha: float = ALPHA) -> int:
    """Holm over the tested ``comparisons`` (in place: ``p_holm``, ``significant``);
    returns the family size."""
    tested = [c for c in comparisons if c.tested]
    for c, ph in zip(tested, holm([c.p for c in tested])):
        c.p_holm = ph
        c.significant = ph < alpha
    return len(tested)


__all__ = [
    "ALPHA",
    "LEVEL",
    "N_MAX",
    "POWER",
    "Comparison",
    "Summary",
    "adjust",
    "compare",
    "holm",
    "normal_n",
    "one_sample",
    "power_paired",
    "power_welch",
    "seeds_needed",
    "summary",
    "t_interval",
]
