"""The regret harness on a small world: the oracle's regret is zero, no policy breaks a guardrail, regret is
the oracle's profit minus the policy's, and a run is reproducible from its seed."""

import numpy as np
import pandas as pd
import pytest

from pricing.bandit import BanditConfig
from pricing.rules import rule_based
from simulator.config import SimConfig
from simulator.harness import (
    FRAME_COLUMNS,
    Bandit,
    HarnessMarket,
    Logged,
    Oracle,
    Period,
    RuleBased,
    Shelf,
    off_policy_estimates,
    run,
    standard_policies,
    summarize,
)
from simulator.shocks import live_day
from simulator.world import World

DAYS = 6


@pytest.fixture(scope="module")
def shelf() -> Shelf:
    world = World(SimConfig(seed=11, skus=100, days=20, scale=1.0))
    skus = world.sku_id[world.is_active(live_day(world))]
    rows = world.sku_index(skus)
    cmin = world.competitor_min_usd(live_day(world))[rows]
    wrong = world.elasticity[rows] * 0.7  # a model that thinks demand is less elastic than it is

    def prior(grid: np.ndarray) -> np.ndarray:
        return world.cart_probability(rows[:, None], grid, cmin[:, None], wrong[:, None])

    return Shelf.of(world, skus, prior)


@pytest.fixture(scope="module")
def frame(shelf) -> pd.DataFrame:
    market = HarnessMarket("drifting", days=DAYS, periods_per_day=2, elasticity_drift=0.3, seed=5)
    return run(shelf, market, standard_policies(shelf, BanditConfig(draws=16)))


def test_the_oracles_regret_is_zero_and_regret_is_the_profit_gap(frame):
    assert list(frame.columns) == list(FRAME_COLUMNS)
    oracle = frame.loc[frame["policy"] == "oracle"]
    assert oracle["regret"].tolist() == [0.0] * DAYS
    reference = oracle.set_index("day")["profit"]
    for _, rows in frame.groupby("policy"):
        np.testing.assert_array_equal(rows["oracle_profit"].to_numpy(), reference.loc[rows["day"]].to_numpy())
        np.testing.assert_allclose(rows["regret"], rows["oracle_profit"] - rows["profit"])


def test_no_policy_breaks_a_guardrail(frame, shelf):
    assert frame["violations"].tolist() == [0] * len(frame)
    assert set(frame["decisions"]) == {len(shelf.rows) * 2}
    assert frame["policy"].unique().tolist() == ["oracle", "bandit", "static_optimizer", "epsilon_greedy", "ucb",
                                                 "rule_based"]


def test_the_oracle_alone_has_zero_regret_and_the_same_profit_in_any_company(shelf, frame):
    market = HarnessMarket("drifting", days=DAYS, periods_per_day=2, elasticity_drift=0.3, seed=5)
    alone = run(shelf, market, [Oracle(shelf)])
    np.testing.assert_allclose(alone["profit"], frame.loc[frame["policy"] == "oracle", "profit"])


def test_a_run_is_reproducible_from_its_seed(shelf, frame):
    market = HarnessMarket("drifting", days=DAYS, periods_per_day=2, elasticity_drift=0.3, seed=5)
    pd.testing.assert_frame_equal(run(shelf, market, standard_policies(shelf, BanditConfig(draws=16))), frame)


def test_the_rule_based_control_prices_as_the_api_does(shelf):
    period = Period(0, 0, shelf.start_price, shelf.open_arms(shelf.start_price), np.full(shelf.grid.shape, np.nan))
    choice = RuleBased(shelf).choose(period, np.random.default_rng(0))
    expected = rule_based(shelf.unit_cost, shelf.start_price, shelf.competitor_price, shelf.map_price).prices
    np.testing.assert_array_equal(choice.prices, expected)


def test_summary_of_a_hand_made_run():
    rows = []
    for day in range(4):
        rows += [("m", 0, "oracle", day, 10.0, 10.0, 0.0, 0, 1),
                 ("m", 0, "static_optimizer", day, 8.0, 10.0, 2.0, 0, 1),
                 ("m", 0, "bandit", day, 10.0 - 2.0 / (day + 1), 10.0, 2.0 / (day + 1), 0, 1),
                 ("m", 0, "rule_based", day, 5.0, 10.0, 5.0, 1, 1)]
    summary = summarize(pd.DataFrame(rows, columns=list(FRAME_COLUMNS)), last_days=2).set_index("policy")
    bandit = summary.loc["bandit"]
    assert bandit["regret"] == pytest.approx(2 + 1 + 2 / 3 + 0.5)
    assert bandit["regret_vs_reference"] == pytest.approx((2 + 1 + 2 / 3 + 0.5) / 8)
    assert bandit["late_vs_early_regret"] == pytest.approx((2 / 3 + 0.5) / 3)
    assert bandit["last_profit_vs_oracle"] == pytest.approx((20 - 2 / 3 - 0.5) / 20)
    assert bandit["last_profit_vs_control"] == pytest.approx((20 - 2 / 3 - 0.5) / 10)
    assert summary.loc["static_optimizer", "regret_exponent"] == pytest.approx(1.0)
    assert summary.loc["rule_based", "violations"] == 4
    assert np.isnan(summary.loc["oracle", "regret_exponent"])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"days": 0}, "days and periods_per_day must be >= 1"),
    ({"elasticity_drift": 1.0}, r"elasticity_drift must be in \[0, 1\)"),
])
def test_bad_markets_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HarnessMarket("m", **kwargs)


def test_off_policy_estimates_of_the_static_optimizer_from_the_bandits_log(shelf):
    market = HarnessMarket("stationary", days=DAYS, periods_per_day=2, seed=6)
    logged = Logged(Bandit(shelf, BanditConfig(draws=64)))
    run(shelf, market, [Oracle(shelf), logged])
    estimates = off_policy_estimates(shelf, logged.records, shelf.prior_rate)
    assert len(logged.records) == estimates["dr"].n == estimates["ips"].n > 0
    assert all(0 < r["propensity"] <= 1 and r["open"][r["arm"]] for r in logged.records)
    truth = estimates["truth"].value
    # Both estimate the same value; the doubly robust one within a few of its standard errors.
    assert abs(estimates["dr"].value - truth) <= 4 * estimates["dr"].stderr
    assert estimates["dr"].stderr <= estimates["ips"].stderr
    with pytest.raises(ValueError, match="no logged decisions"):
        off_policy_estimates(shelf, [], shelf.prior_rate)
