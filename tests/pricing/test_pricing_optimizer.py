"""The optimizer on known constant-elasticity demand d(p) = a * p**e (profit optimum c * e / (1 + e)), the
response curve and implied elasticity on hand-computed values, and the guardrail properties (hypothesis)."""


import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pricing_helpers import NAN, assert_guardrail_clean, expected_interval, guardrails, markets

from pricing.guardrails import CLAMP_REASONS, Guardrails, Reason
from pricing.optimizer import PROBE_STEP, implied_elasticity, optimize, price_grid, response_curve

R = Reason
NO_ENDING = Guardrails.from_dict({"price_ending": None})


def constant_elasticity(a, e):
    """Demand a * p**e, one (a, e) per SKU row (or shared)."""
    a, e = np.asarray(a, dtype=float), np.asarray(e, dtype=float)
    return lambda prices: np.atleast_1d(a)[:, None] * prices ** np.atleast_1d(e)[:, None]


def test_returns_the_grid_point_nearest_the_known_optimum():
    # Optimum 10 * -2.5 / -1.5 = 16.667. Current 16: grid of 41 over the window [14.4, 17.6] (step 0.08),
    # nearest point 14.4 + 28 * 0.08 = 16.64. Open above (no current, no competitor): grid [11, 33] (step
    # 0.55), optimum 10 * -2 / -1 = 20, nearest point 11 + 16 * 0.55 = 19.8.
    decision = optimize(constant_elasticity([1000, 1000], [-2.5, -2.0]), 10, [16, NAN], rails=NO_ENDING)
    assert decision.prices == pytest.approx([16.64, 19.8], rel=1e-12)
    assert decision.reasons() == [[R.NO_COMPETITOR], [R.NO_CURRENT_PRICE, R.NO_COMPETITOR]]
    assert decision.strategy == "optimizer"


def test_a_rule_that_holds_the_optimum_back_is_recorded():
    # Optimum 16.67 above the window [10.8, 13.2]: the daily change limit binds, then 12.99 (13.99 is outside).
    held = optimize(constant_elasticity(1000, -2.5), 10, 12)
    assert held.prices.tolist() == [12.99]
    assert held.reasons() == [[R.DAILY_CHANGE_LIMIT, R.PRICE_ENDING, R.NO_COMPETITOR]]
    # Optimum 10 * 20 / 19 = 10.53 below the floor 11: the margin floor binds.
    floored = optimize(constant_elasticity(1000, -20), 10, rails=NO_ENDING)
    assert floored.prices == pytest.approx([11.0], rel=1e-12)
    assert floored.reasons() == [[R.MARGIN_FLOOR, R.NO_CURRENT_PRICE, R.NO_COMPETITOR]]


def test_an_open_interval_is_searched_up_to_a_multiple_of_the_floor_without_a_reason():
    # Optimum 10 * 21 = 210, above the search cap 3 * 11 = 33: the cap is not a guardrail, nothing recorded.
    decision = optimize(constant_elasticity(1000, -1.05), 10, rails=NO_ENDING)
    assert decision.prices == pytest.approx([33.0], rel=1e-12)
    assert decision.reasons() == [[R.NO_CURRENT_PRICE, R.NO_COMPETITOR]]


def test_price_grid_spans_the_interval_ends_included():
    grid = price_grid(np.array([10.0, 5.0]), np.array([12.0, 5.0]), 5)
    assert grid.tolist() == [[10.0, 10.5, 11.0, 11.5, 12.0], [5.0] * 5]


@pytest.mark.parametrize(("demand_fn", "message"), [
    (lambda p: p[:, :1], r"one value per price, shape \(1, 43\)"),
    (lambda p: -p, r"negative or non-finite demand for 1 SKU\(s\), first rows \[0\]"),
    (lambda p: p * np.nan, "negative or non-finite"),
])
def test_a_bad_demand_function_is_refused(demand_fn, message):
    with pytest.raises(ValueError, match=message):
        optimize(demand_fn, 10, 12)


def test_response_curve_values():
    # d(p) = 100 / p, cost 2 at 4 and 5; second call: two SKUs with costs 1 and 3 at their own prices.
    expected = pd.DataFrame({"sku_row": [0, 0], "price": [4.0, 5.0], "demand": [25.0, 20.0],
                             "revenue": [100.0, 100.0], "profit": [50.0, 60.0]})
    pd.testing.assert_frame_equal(response_curve(lambda p: 100 / p, 2, [4, 5]), expected)
    two = response_curve(lambda p: 100 / p, [1, 3], [[4, 5], [10, 20]])
    pd.testing.assert_frame_equal(two, pd.DataFrame({
        "sku_row": [0, 0, 1, 1], "price": [4.0, 5.0, 10.0, 20.0], "demand": [25.0, 20.0, 10.0, 5.0],
        "revenue": [100.0] * 4, "profit": [75.0, 80.0, 70.0, 85.0]}))
    with pytest.raises(ValueError, match="unit_cost must be a scalar or one per price grid"):
        response_curve(lambda p: 100 / p, [1, 2, 3], [[4, 5], [10, 20]])


def test_implied_elasticity_of_known_demands():
    elasticity = implied_elasticity(constant_elasticity([1000, 5], [-2.5, -1.2]), [16, 3])
    assert elasticity == pytest.approx([-2.5, -1.2], abs=1e-3)
    # d(p) = exp(-p / 10) has elasticity -p / 10: -2 at 20.
    assert implied_elasticity(lambda p: np.exp(-p / 10), 20.0) == pytest.approx([-2.0], abs=1e-3)
    assert np.isnan(implied_elasticity(lambda p: np.zeros_like(p), [5.0])).tolist() == [True]


def test_the_optimizer_is_vectorised_over_skus():
    """As many demand evaluations for a thousand SKUs as for ten: one call per grid pass, never per SKU
    (speed itself is a benchmark's business, not a test's)."""
    def calls_for(n: int) -> int:
        rng = np.random.default_rng(7)
        cost = rng.uniform(5, 50, n)
        demand_fn = constant_elasticity(rng.uniform(10, 100, n), rng.uniform(-4, -1.2, n))
        calls = []

        def counted(prices):
            calls.append(np.shape(prices))
            return demand_fn(prices)

        optimize(counted, cost, cost * rng.uniform(1.2, 2.5, n), cost * rng.uniform(1.1, 2.5, n))
        assert all(shape[0] == n for shape in calls)
        return len(calls)

    assert calls_for(1000) == calls_for(10) <= 5


@settings(max_examples=150, deadline=None)
@given(market=markets(), rails=guardrails, elasticity=st.floats(-6, -1.05), grid_points=st.integers(2, 41))
def test_optimized_prices_are_guardrail_clean(market, rails, elasticity, grid_points):
    decision = optimize(constant_elasticity(1.0, elasticity), market.unit_cost, market.current_price,
                        market.competitor_price, market.map_price, rails, grid_points=grid_points)
    assert_guardrail_clean(decision, market, rails)


@settings(max_examples=150, deadline=None)
@given(market=markets(), rails=guardrails, elasticity=st.floats(-6, -1.05))
def test_optimized_prices_find_the_constrained_optimum_and_say_which_rule_held_it(market, rails, elasticity):
    """Profit under constant elasticity is unimodal with its peak at c * e / (1 + e): the price is the grid
    point next to the peak when it is allowed, else the bound nearest to it, named by a reason once the
    peak lies a probe step or more beyond that bound."""
    rails = Guardrails(**(rails.to_dict() | {"price_ending": None}))
    decision = optimize(constant_elasticity(1.0, elasticity), market.unit_cost, market.current_price,
                        market.competitor_price, market.map_price, rails, grid_points=41)
    for i, (price, reasons) in enumerate(zip(decision.prices, decision.reasons(), strict=True)):
        cost = market.unit_cost[i]
        want = expected_interval(cost, market.current_price[i], market.competitor_price[i], market.map_price[i], rails)
        high = want.high if np.isfinite(want.high) else want.low * 3
        peak = cost * elasticity / (1 + elasticity)
        clamps = [r for r in reasons if r in CLAMP_REASONS]
        row = f"row {i}: price {price}, peak {peak}, reasons {reasons}, expected {want}"
        if want.low <= peak <= high:
            assert abs(price - peak) <= (high - want.low) / 40 and clamps == [], row
        elif peak > high:
            assert price == high, row
            if np.isfinite(want.high) and peak >= high * (1 + PROBE_STEP):
                assert clamps == [want.high_reason], row
            if not np.isfinite(want.high):
                assert clamps == [], row  # the search cap is no guardrail
        else:
            assert price == want.low, row
            if peak <= want.low * (1 - PROBE_STEP):
                assert clamps == [want.low_reason], row
