"""The statistics of a readout, as pure numpy functions on summary figures.

Lift is relative: treatment / control - 1. Its confidence interval uses the delta method on the
ratio of two independent means (normal approximation, `Z_95`): with m_c, m_t the variant means and
v_c, v_t the variances of those means, Var(m_t / m_c) ~ v_t / m_c^2 + m_t^2 v_c / m_c^4. Tests:
the pooled two-proportion z-test for rates, Welch's t-test for per-visitor values; the sample-ratio
check is Pearson's chi-square of visitors against the configured split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

Z_95 = float(stats.norm.ppf(0.975))


@dataclass(frozen=True)
class Comparison:
    """Treatment against control: relative lift, its 95% interval and the test's two-sided p-value."""

    lift: float
    ci_low: float
    ci_high: float
    p_value: float


def relative_lift(mean_c: float, var_mean_c: float, mean_t: float, var_mean_t: float) -> tuple[float, float, float]:
    """(lift, ci_low, ci_high) of mean_t / mean_c - 1 by the delta method; NaN when the control mean is 0."""
    if mean_c == 0:
        return float("nan"), float("nan"), float("nan")
    lift = mean_t / mean_c - 1
    se = np.sqrt(var_mean_t / mean_c**2 + mean_t**2 * var_mean_c / mean_c**4)
    return float(lift), float(lift - Z_95 * se), float(lift + Z_95 * se)


def compare_proportions(successes_c: int, n_c: int, successes_t: int, n_t: int) -> Comparison:
    """Rates: delta-method lift of p_t / p_c and the pooled two-proportion z-test's p-value."""
    p_c, p_t = successes_c / n_c, successes_t / n_t
    pooled = (successes_c + successes_t) / (n_c + n_t)
    se_pooled = np.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
    p_value = float(2 * stats.norm.sf(abs(p_t - p_c) / se_pooled)) if se_pooled > 0 else float("nan")
    lift, low, high = relative_lift(p_c, p_c * (1 - p_c) / n_c, p_t, p_t * (1 - p_t) / n_t)
    return Comparison(lift, low, high, p_value)


def compare_means(values_c: np.ndarray, values_t: np.ndarray) -> Comparison:
    """Per-visitor values: delta-method lift of mean_t / mean_c and Welch's t-test's p-value."""
    values_c, values_t = np.asarray(values_c, dtype=float), np.asarray(values_t, dtype=float)
    var_c = values_c.var(ddof=1) / len(values_c)
    var_t = values_t.var(ddof=1) / len(values_t)
    p_value = (float(stats.ttest_ind(values_t, values_c, equal_var=False).pvalue)
               if var_c + var_t > 0 else float("nan"))
    lift, low, high = relative_lift(values_c.mean(), var_c, values_t.mean(), var_t)
    return Comparison(lift, low, high, p_value)


def srm_p_value(visitors: np.ndarray, weights: np.ndarray) -> float:
    """Sample-ratio mismatch: p-value of Pearson's chi-square of visitor counts against the weights."""
    visitors, weights = np.asarray(visitors, dtype=float), np.asarray(weights, dtype=float)
    expected = visitors.sum() * weights / weights.sum()
    return float(stats.chisquare(visitors, expected).pvalue)
