"""The bandit arm of the API: prices drawn on the guardrails' grid with their propensity, the arm through
`price_sku`, outcomes matched to arms, and a restart that keeps the learnt state."""

from datetime import UTC, date, datetime
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pricing.bandit import BanditConfig, log_linear
from pricing.guardrails import feasible_interval
from serving.bandit import BanditArm
from serving.experiments import Assignment
from serving.online_features import PRICING_TABLE, build_snapshot, latest_per_sku
from serving.pricebook import PriceBooks, feature_frame
from serving.routes import price_sku
from training.demand import fit

NOW = datetime(2026, 10, 2, 12, 30, tzinfo=UTC)
SKUS = [f"SKU-{i:06d}" for i in range(1, 4)]
FEATURES = {"category": "books", "typical_price_usd": 20.0, "sku_conversion_28d": 0.05, "sku_conversion_90d": 0.05,
            "anchor_score": 0.0, "day_of_week": 3.0, "category_views_7d_vs_28d": 1.0, "sku_views_7d": 70.0}


def _fit(cart_rate: float):
    """A real (small) LightGBM demand model, trained on SKU-days whose add-to-cart rate, `cart_rate` at the
    typical price, falls with price."""
    rng = np.random.default_rng(0)
    price = rng.uniform(14, 28, 600)
    views = rng.integers(20, 60, 600)
    carts = rng.poisson(views * cart_rate * (price / 20.0) ** -2.5)
    frame = pd.DataFrame({**FEATURES, "last_price_usd": 20.0, "competitor_min_price_usd": 20.0, "views": views,
                          "add_to_carts": carts, "units": carts, "avg_price_usd": price})
    return fit(frame, {"min_data_in_leaf": 50}, rounds=20)


@pytest.fixture(scope="module")
def model():
    return _fit(0.2)


@pytest.fixture(scope="module")
def champion_v8():
    """Another real model: trained where shoppers add to cart half as often."""
    return _fit(0.1)


def snapshot(skus=tuple(SKUS)):
    rows = [{"sku": sku, "as_of_date": date(2026, 10, 1), "unit_cost_usd": 10.0, "last_price_usd": 20.0,
             "competitor_min_price_usd": 20.0, "map_price_usd": None, **FEATURES} for sku in skus]
    table = latest_per_sku(pa.Table.from_pylist(rows))
    return build_snapshot({PRICING_TABLE: table}, {PRICING_TABLE: 0}, date(2026, 10, 2), NOW)


def test_prices_are_grid_prices_inside_the_guardrails_with_their_propensity(own_settings, model):
    arm = BanditArm(own_settings, BanditConfig(draws=200), seed=1)
    chosen = [arm.decide(sku, snapshot(), model) for sku in SKUS for _ in range(20)]
    interval = feasible_interval(10.0, 20.0, 20.0)  # margin floor 11, change window 18..22, band 17..23
    assert all(interval.low[0] <= c.price_usd <= interval.high[0] for c in chosen)
    assert {round(c.price_usd % 1, 2) for c in chosen} == {0.99}
    state = arm.state
    assert list(state.skus) == SKUS
    for c in chosen:
        assert c.price_usd == state.grid[0, c.arm] and 0 < c.propensity <= 1
    assert chosen[0].guardrails == ()
    assert arm.decide("SKU-999999", snapshot(), model) is None  # no features: the caller answers without it


def test_the_bandit_variant_answers_through_the_price_route(own_settings, model):
    arm = BanditArm(own_settings, BanditConfig(draws=100), seed=2)
    loaded = SimpleNamespace(name="pricing", alias="champion", version="7", model=model)
    serving = SimpleNamespace(models=SimpleNamespace(get=lambda name, alias: loaded), prices=PriceBooks(),
                              bandit=arm, metrics=SimpleNamespace(record_fallback=lambda *a: None))
    variant = Assignment("pricing_bandit", "bandit", "bandit", "champion", "assigned", 1)
    template = price_sku(serving, SKUS[0], variant, snapshot())
    answer = template.answer
    assert (answer.strategy, answer.variant, answer.fallback, answer.model.version) == ("bandit", "bandit", False, "7")
    assert answer.price_usd in arm.state.grid[0] and 0 < template.propensity <= 1

    # A variant that never explores: the posterior's best price, for certain.
    exploiting = Assignment("pricing_bandit", "bandit", "bandit", "champion", "assigned", 1, explore_share=0.0)
    assert {price_sku(serving, SKUS[0], exploiting, snapshot()).propensity for _ in range(5)} == {1.0}
    model_variant = Assignment("pricing_bandit", "model", "model", "champion", "assigned", 1)
    assert price_sku(serving, SKUS[0], model_variant, snapshot()).propensity == 1.0  # deterministic


def test_outcomes_are_matched_to_arms_and_a_restart_keeps_them(own_settings, model):
    arm = BanditArm(own_settings, BanditConfig(draws=50), seed=3).start()
    first = arm.decide(SKUS[1], snapshot(), model)
    grid = arm.state.grid[1]
    outcomes = pd.DataFrame({"sku": [SKUS[1], SKUS[1], SKUS[1], "SKU-999999"],
                             "price_usd": [first.price_usd, first.price_usd, 12.34, first.price_usd],
                             "views": [3, 2, 5, 1], "add_to_carts": [1, 0, 1, 1]})
    assert arm.observe(outcomes) == 2  # off the grid and unknown SKUs are left out
    assert arm.state.views[1, first.arm] == 5 and arm.state.carts[1, first.arm] == 1
    assert arm.state.views.sum() == 5
    arm.close()

    restarted = BanditArm(own_settings, seed=4).start()
    np.testing.assert_array_equal(restarted.state.views, arm.state.views)
    np.testing.assert_array_equal(restarted.state.grid[1], grid)
    np.testing.assert_allclose(restarted.state.posterior().mean, arm.state.posterior().mean)
    assert restarted.state.config == BanditConfig(draws=50)  # the learnt state's settings, not the new process's
    restarted.close()


def test_new_skus_join_with_the_models_prior_and_a_new_champion_reanchors_it_keeping_the_evidence(own_settings,
                                                                                                   model, champion_v8):
    arm = BanditArm(own_settings, BanditConfig(draws=50), seed=5)
    first = arm.decide(SKUS[0], snapshot(), model, model_version="7")
    arm.observe(pd.DataFrame({"sku": [SKUS[0]], "price_usd": [first.price_usd], "views": [40], "add_to_carts": [9]}))
    state = arm.state
    assert (state.skus.tolist(), state.model_version) == (SKUS, "7")

    new_sku = "SKU-000009"
    grown = snapshot((*SKUS, new_sku))  # the features refreshed: a SKU launched
    assert arm.decide(new_sku, grown, model, model_version="7") is not None
    assert state.skus.tolist() == [*SKUS, new_sku]
    np.testing.assert_allclose(state.prior_rate[3], state.prior_rate[0], rtol=1e-12)  # the same features
    assert (state.views[3].sum(), state.views.sum()) == (0.0, 40.0)

    # Champion v8, trained where shoppers added to cart half as often: the prior follows it, the evidence stays.
    before = state.prior_rate.copy()
    arm.decide(SKUS[1], grown, champion_v8, model_version="8")
    assert state.model_version == "8"
    frame = feature_frame(grown)
    grid = np.where(np.isfinite(state.grid), state.grid, state.anchor[:, None])
    expected = log_linear(state.grid, state.anchor, champion_v8.cart_rate(frame, grid))
    np.testing.assert_allclose(state.prior_rate, np.where(np.isfinite(state.grid), expected, np.nan), rtol=1e-9)
    assert np.nanmax(state.prior_rate / before) < 1  # v8 expects fewer add-to-carts at every grid price
    assert (state.views.sum(), state.carts.sum(), state.views[0, first.arm]) == (40.0, 9.0, 40.0)
    arm.close()
    assert BanditArm(own_settings).start().state.model_version == "8"  # saved with the state
