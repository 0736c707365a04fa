"""The pricing bandit: posterior updates against hand-computed outcomes, propensities, guardrails as properties
(hypothesis), and a restart that keeps what was learnt."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pricing.bandit import (
    NO_ARM,
    BanditConfig,
    BanditState,
    epsilon_greedy,
    greedy,
    log_linear,
    open_arms,
    price_grid,
    snap_to_ending,
    thompson,
)
from pricing.guardrails import Guardrails
from tests.pricing.pricing_helpers import expected_interval, guardrails, markets

# Priors so wide that the posterior mode is the maximum-likelihood fit, which is computable by hand.
FLAT = BanditConfig(category_level_sd=1e4, category_slope_sd=1e4, sku_level_sd=1e4, sku_slope_sd=1e4)


def two_arm_state(config: BanditConfig = FLAT, categories=("books",)) -> BanditState:
    """SKUs with arms at 10 and 20 (anchor 10: log ratios 0 and log 2), the model's rate 0.2 at both."""
    n = len(categories)
    return BanditState.start([f"SKU-{i:06d}" for i in range(n)], list(categories), np.full(n, 5.0), np.full(n, 10.0),
                             np.tile([10.0, 20.0], (n, 1)), np.full((n, 2), 0.2), config)


def test_posterior_on_hand_computed_outcomes():
    state = two_arm_state()
    state.observe([0, 0], [0, 1], [100, 100], [30, 5])
    posterior = state.posterior()
    # Two arms, two parameters: the fit is exact. level = log(30 / (100 x 0.2)), slope from the second arm.
    level, slope = math.log(1.5), math.log(0.25 / 1.5) / math.log(2)
    np.testing.assert_allclose(posterior.mean, [[level, slope]], rtol=1e-9)
    np.testing.assert_allclose(posterior.rate(), [[0.30, 0.05]], rtol=1e-9)
    # Covariance: the inverse Fisher information at the fit, sum of expected carts x (1, x)(1, x)', counted
    # once for the SKU and once for its category (the SKU's prior centre), which saw the same outcomes.
    x = math.log(2)
    fisher = np.array([[30 + 5, 5 * x], [5 * x, 5 * x * x]])
    np.testing.assert_allclose(posterior.cov, [2 * np.linalg.inv(fisher)], rtol=1e-6)


def test_outcomes_add_up_and_decay():
    state = two_arm_state(BanditConfig(decay=0.5))
    state.observe([0, 0, 0], [0, 0, 1], [10, 30, 5], [2, 4, 1])
    np.testing.assert_array_equal(state.views, [[40.0, 5.0]])
    np.testing.assert_array_equal(state.carts, [[6.0, 1.0]])
    state.forget(days=2)
    np.testing.assert_array_equal(state.views, [[10.0, 1.25]])
    np.testing.assert_array_equal(state.carts, [[1.5, 0.25]])


def test_a_category_shares_what_its_skus_show():
    config = BanditConfig(category_level_sd=1.0, category_slope_sd=1.0, sku_level_sd=0.1, sku_slope_sd=0.1)
    state = two_arm_state(config, categories=("books", "books", "toys"))
    state.observe([0, 0], [0, 1], [1000, 1000], [200, 50])  # SKU 0: the model is right at 10, 4x high at 20
    slope = state.posterior().mean[:, 1]
    assert slope[0] < -1.5  # learnt from its own outcomes
    assert slope[1] < -1.0  # a SKU of the same category without outcomes follows it
    assert slope[2] == 0.0  # another category keeps the model's curve


def test_the_prior_is_the_models_level_and_elasticity():
    grid = np.array([[8.0, 10.0, 12.5, np.nan]])
    staircase = np.array([[0.30, 0.30, 0.10, 0.5]])
    fitted = log_linear(grid, np.array([10.0]), staircase)
    x = np.log(grid[0, :3] / 10)
    slope, intercept = np.polyfit(x, np.log(staircase[0, :3]), 1)
    np.testing.assert_allclose(fitted, [[*np.exp(intercept + slope * x), np.nan]], rtol=1e-9)


def test_propensities_sum_to_one_over_the_open_arms():
    state = two_arm_state(BanditConfig(draws=500), categories=("books", "toys", "home"))
    state.observe([0, 1], [0, 1], [50, 50], [10, 3])
    open_ = np.array([[True, True], [True, False], [False, False]])
    choice = thompson(state, open_, np.random.default_rng(1))
    np.testing.assert_allclose(choice.propensities.sum(axis=1), [1.0, 1.0, 0.0])
    assert np.all(choice.propensities[~open_] == 0)
    assert choice.arms[1] == 0 and choice.propensities[1, 0] == 1.0  # one open arm: chosen for certain
    assert choice.arms[2] == NO_ARM and np.isnan(choice.prices[2]) and choice.propensity[2] == 1.0
    assert choice.propensity[0] == choice.propensities[0, choice.arms[0]] > 0


def test_exploration_stays_within_its_share_of_traffic():
    state = two_arm_state(BanditConfig(explore_share=0.25, draws=400))
    open_ = np.ones((1, 2), dtype=bool)
    # The model's rate is the same at both prices: the higher price's margin makes it the best.
    best = greedy(state.grid, state.unit_cost, state.posterior().rate(), open_).arms[0]
    assert best == 1
    choice = thompson(state, open_, np.random.default_rng(3))
    assert choice.propensities[0, 1 - best] <= 0.25
    np.testing.assert_allclose(choice.propensities.sum(), 1.0)
    never = thompson(two_arm_state(BanditConfig(explore_share=0.0)), open_, np.random.default_rng(3))
    np.testing.assert_array_equal(never.propensities, [[1.0 * (best == 0), 1.0 * (best == 1)]])


def test_epsilon_greedy_propensities():
    grid, rate = np.array([[10.0, 11.0, 12.0]]), np.array([[0.3, 0.3, 0.1]])
    choice = epsilon_greedy(grid, np.array([5.0]), rate, np.array([[True, True, True]]), 0.3, np.random.default_rng(0))
    np.testing.assert_allclose(choice.propensities, [[0.1, 0.8, 0.1]])


@settings(max_examples=60, deadline=None)
@given(market=markets(max_rows=8), rails=guardrails, seed=st.integers(0, 2**16))
def test_every_arm_and_every_bandit_price_is_inside_the_guardrails(market, rails, seed):
    anchor = market.candidate
    grid = price_grid(anchor, market.unit_cost, market.competitor_price, market.map_price, rails)
    open_ = open_arms(grid, market.unit_cost, market.current_price, market.competitor_price, market.map_price, rails)
    for i in range(len(anchor)):
        static = expected_interval(market.unit_cost[i], math.nan, market.competitor_price[i], market.map_price[i],
                                   rails)
        today = expected_interval(market.unit_cost[i], market.current_price[i], market.competitor_price[i],
                                  market.map_price[i], rails)
        arms = grid[i][np.isfinite(grid[i])]
        assert np.all((arms >= static.low * (1 - 1e-9)) & (arms <= static.high * (1 + 1e-9))), (i, arms, static)
        assert len(np.unique(arms)) == len(arms)
        opened = grid[i][open_[i]]
        assert np.all((opened >= today.low * (1 - 1e-9)) & (opened <= today.high * (1 + 1e-9))), (i, opened, today)
    if not np.isfinite(grid).any(axis=1).all():
        return  # a SKU without a single arm is priced without the bandit
    state = BanditState.start([str(i) for i in range(len(anchor))], ["x"] * len(anchor), market.unit_cost, anchor,
                              grid, np.where(np.isfinite(grid), 0.2, np.nan), BanditConfig(draws=16))
    choice = thompson(state, open_, np.random.default_rng(seed))
    chosen = choice.arms != NO_ARM
    assert np.array_equal(chosen, open_.any(axis=1))
    assert np.all(open_[np.flatnonzero(chosen), choice.arms[chosen]])
    np.testing.assert_allclose(choice.propensities.sum(axis=1), open_.any(axis=1).astype(float))


def test_grid_prices_take_the_price_ending():
    rails = Guardrails(min_margin_pct=10, max_daily_change_pct=10, competitor_band=(0.85, 1.15), respect_map=True,
                       price_ending=0.99)
    grid = price_grid([10.0], [5.0], [10.0], None, rails)
    arms = grid[0][np.isfinite(grid[0])]
    np.testing.assert_allclose(arms, [8.99, 9.99, 10.99])  # 0.85 x 10 .. 1.15 x 10, ending .99, no repeats
    np.testing.assert_allclose(snap_to_ending([12.40, 12.60, 0.2], None), [12.40, 12.60, 0.2])


def test_a_restart_keeps_what_was_learnt(tmp_path):
    state = two_arm_state(BanditConfig(decay=0.9, draws=64), categories=("books", "toys"))
    state.observe([0, 1, 1], [1, 0, 1], [40, 60, 7], [3, 11, 2])
    state.model_version = "3"
    path = tmp_path / "bandit" / "state.json"
    state.save(path)
    restarted = BanditState.load(path)
    for name in ("skus", "categories", "unit_cost", "anchor", "grid", "prior_rate", "views", "carts"):
        np.testing.assert_array_equal(getattr(restarted, name), getattr(state, name))
    assert (restarted.config, restarted.model_version) == (state.config, "3")
    open_ = np.ones((2, 2), dtype=bool)
    before = thompson(state, open_, np.random.default_rng(5))
    after = thompson(restarted, open_, np.random.default_rng(5))
    np.testing.assert_array_equal(after.arms, before.arms)
    np.testing.assert_array_equal(after.propensities, before.propensities)
    assert not path.with_name("state.json.partial").exists()


def test_new_skus_start_from_the_model_and_a_new_model_reanchors_the_prior_keeping_the_evidence():
    state = two_arm_state()
    state.observe([0, 0], [0, 1], [100, 100], [30, 5])
    state.extend(["SKU-000009"], ["toys"], [5.0], [10.0], np.array([[10.0, 20.0]]), np.array([[0.1, 0.1]]))
    assert state.skus.tolist() == ["SKU-000000", "SKU-000009"]
    np.testing.assert_array_equal(state.views, [[100.0, 100.0], [0.0, 0.0]])
    np.testing.assert_allclose(state.prior_rate, [[0.2, 0.2], [0.1, 0.1]], rtol=1e-12)
    np.testing.assert_allclose(state.posterior().rate()[1], [0.1, 0.1], rtol=1e-9)  # no evidence: the model

    state.reanchor([0], np.array([[0.3, 0.3]]), "2")  # a champion that thinks SKU 0 sells 1.5x better
    assert state.model_version == "2"
    np.testing.assert_allclose(state.prior_rate, [[0.3, 0.3], [0.1, 0.1]], rtol=1e-12)
    np.testing.assert_array_equal(state.carts, [[30.0, 5.0], [0.0, 0.0]])
    # The same outcomes decide (two arms, two parameters): the correction is now relative to the new prior.
    posterior = state.posterior()
    np.testing.assert_allclose(posterior.mean[0], [0.0, math.log(0.05 / 0.3) / math.log(2)], atol=1e-9)
    np.testing.assert_allclose(posterior.rate()[0], [0.30, 0.05], rtol=1e-9)

    with pytest.raises(ValueError, match="SKUs the bandit already prices"):
        state.extend(["SKU-000009"], ["toys"], [5.0], [10.0], np.array([[10.0, 20.0]]), np.array([[0.1, 0.1]]))
    with pytest.raises(ValueError, match="new SKUs need the state's 2 arms"):
        state.extend(["SKU-000010"], ["toys"], [5.0], [10.0], np.array([[10.0]]), np.array([[0.1]]))
    with pytest.raises(ValueError, match="prior_rate must be positive"):
        state.reanchor([0], np.array([[0.3, 0.0]]), "3")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"explore_share": 1.5}, "explore_share must be in"),
    ({"decay": 0.0}, "decay must be in"),
    ({"draws": 0}, "draws must be >= 1"),
    ({"sku_slope_sd": 0.0}, "prior standard deviations must be positive"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BanditConfig(**kwargs)


def test_bad_outcomes_and_priors_are_refused():
    state = BanditState.start(["a"], ["x"], [5.0], [10.0], np.array([[10.0, np.nan]]), np.array([[0.2, np.nan]]))
    with pytest.raises(ValueError, match="outcomes must be of grid prices"):
        state.observe([0], [1], [10], [1])
    with pytest.raises(ValueError, match="views and add-to-carts must be >= 0"):
        state.observe([0], [0], [-1], [0])
    with pytest.raises(ValueError, match="prior_rate must be positive"):
        BanditState.start(["a"], ["x"], [5.0], [10.0], np.array([[10.0]]), np.array([[0.0]]))
    with pytest.raises(KeyError, match="SKUs the bandit does not price"):
        state.rows(["b"])
