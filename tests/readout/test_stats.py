"""Readout statistics against hand-computed figures, and recovery of a known injected lift."""

import math

import numpy as np
import pytest

from readout.stats import Z_95, compare_means, compare_proportions, relative_lift, srm_p_value


def test_two_proportions_20_of_100_against_30_of_100():
    # pooled p = 50/200 = 0.25, se = sqrt(0.25 * 0.75 * (1/100 + 1/100)) = sqrt(0.00375); z = 0.1 / se = 1.632993
    # lift = 0.3 / 0.2 - 1 = 0.5; delta-method se = sqrt(0.0021 / 0.04 + 0.09 * 0.0016 / 0.0016) = sqrt(0.1425)
    result = compare_proportions(20, 100, 30, 100)
    assert result.p_value == pytest.approx(math.erfc(0.1 / math.sqrt(0.00375) / math.sqrt(2)), rel=1e-12)
    assert result.p_value == pytest.approx(0.1024704, abs=1e-7)
    assert result.lift == pytest.approx(0.5)
    assert (result.ci_low, result.ci_high) == pytest.approx((0.5 - 0.7398702, 0.5 + 0.7398702), abs=1e-7)


def test_welch_on_two_small_samples():
    # control 1,2,3,4: mean 2.5, var of the mean 5/3/4; treatment 2,4,6,8: mean 5, var of the mean 20/3/4
    # t = 2.5 / sqrt(2.0833) = 1.732051 on Welch-Satterthwaite df 4.4118 -> p = 0.1515805
    # lift = 1.0; se = sqrt(1.6667 / 6.25 + 25 * 0.41667 / 39.0625) = sqrt(0.53333) -> +- 1.4313553
    result = compare_means(np.array([1, 2, 3, 4]), np.array([2, 4, 6, 8]))
    assert result.p_value == pytest.approx(0.1515805, abs=1e-7)
    assert (result.lift, result.ci_low, result.ci_high) == pytest.approx((1.0, -0.4313553, 2.4313553), abs=1e-7)


def test_srm_chi_square_55_45_against_50_50():
    # chi2 = 5^2/50 + 5^2/50 = 1 on 1 df: p = erfc(sqrt(1/2)) = 0.3173105
    assert srm_p_value(np.array([55, 45]), np.array([50, 50])) == pytest.approx(math.erfc(math.sqrt(0.5)), rel=1e-12)
    # a 90/10 split seen as 100/100 is a mismatch
    assert srm_p_value(np.array([100, 100]), np.array([90, 10])) < 1e-30


def test_lift_without_a_control_mean_is_undefined():
    assert all(math.isnan(x) for x in relative_lift(0.0, 0.0, 1.0, 0.1))
    assert Z_95 == pytest.approx(1.959964, abs=1e-6)


def test_readout_recovers_an_injected_lift_within_its_interval():
    """Conversion 10% vs 12% (+20%), revenue per visitor 5.0 vs 5.5 (+10%), over 20 seeds: the
    95% intervals cover the truth in about 95% of runs (here at least 17 of 20) and each run is
    centred near it."""
    covered = {"rate": 0, "mean": 0}
    for seed in range(20):
        rng = np.random.default_rng(seed)
        n = 20_000
        c, t = rng.random(n) < 0.10, rng.random(n) < 0.12
        rate = compare_proportions(int(c.sum()), n, int(t.sum()), n)
        mean = compare_means(rng.exponential(5.0, n), rng.exponential(5.5, n))
        covered["rate"] += rate.ci_low <= 0.2 <= rate.ci_high
        covered["mean"] += mean.ci_low <= 0.1 <= mean.ci_high
        assert abs(rate.lift - 0.2) < 0.15 and abs(mean.lift - 0.1) < 0.08
    assert covered["rate"] >= 17 and covered["mean"] >= 17
