"""The demand model on synthetic SKU-days with a known constant elasticity per category."""

import numpy as np
import pandas as pd
import pytest

from pricing.optimizer import implied_elasticity
from training import demand

ELASTICITY = {"books": -1.5, "grocery": -3.0}


def feature_rows(n: int, category: str, typical: float = 20.0) -> pd.DataFrame:
    return pd.DataFrame({
        "sku": [f"SKU-{i:06d}" for i in range(n)], "category": category, "typical_price_usd": typical,
        "last_price_usd": typical, "list_price_usd": typical, "competitor_min_price_usd": np.nan,
        "sku_conversion_28d": 0.1, "sku_conversion_90d": 0.1, "anchor_score": 1.0, "day_of_week": 3,
        "category_views_7d_vs_28d": 1.0, "sku_views_7d": 70, "unit_cost_usd": 8.0,
    })


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    """SKU-days whose add-to-cart rate is 0.2 * (price / typical) ** elasticity of the category."""
    rng = np.random.default_rng(3)
    frames = []
    for category, elasticity in ELASTICITY.items():
        rows = feature_rows(6000, category)
        price = rows["typical_price_usd"] * rng.uniform(0.8, 1.15, len(rows))
        views = rng.poisson(30, len(rows))
        carts = rng.poisson(views * 0.2 * (price / rows["typical_price_usd"]) ** elasticity)
        frames.append(rows.assign(avg_price_usd=price, views=views, add_to_carts=carts,
                                  units=np.round(carts * 0.75).astype(int)))
    return pd.concat(frames, ignore_index=True)


def test_design_matrix_puts_price_ratio_first_and_repeats_row_features_per_grid_point():
    rows = feature_rows(2, "books").assign(competitor_min_price_usd=[25.0, np.nan], typical_price_usd=[20.0, np.nan],
                                           last_price_usd=[np.nan, 10.0])
    matrix = demand.design_matrix(rows, np.array([[20.0, 22.0], [10.0, 5.0]]), ("books", "grocery"))
    expected_row = {0: [np.log(25 / 20), 1, 0, np.log(20), 0.1, 0.1, 1, 3, 1],
                    1: [0.0, 0, 0, np.log(10), 0.1, 0.1, 1, 3, 1]}
    np.testing.assert_allclose(matrix, [[0.0, *expected_row[0]], [np.log(1.1), *expected_row[0]],
                                        [0.0, *expected_row[1]], [np.log(0.5), *expected_row[1]]])


def test_fit_recovers_each_category_elasticity_and_demand_falls_with_price(synthetic):
    model = demand.fit(synthetic)
    for category, elasticity in ELASTICITY.items():
        rows = feature_rows(1, category)
        estimated = implied_elasticity(model.demand_fn(rows), rows["typical_price_usd"].to_numpy(), eps=0.1)
        assert estimated[0] == pytest.approx(elasticity, rel=0.1)
        grid = np.linspace(14, 24, 41)[None, :]
        assert np.all(np.diff(model.units_per_view(rows, grid)[0]) <= 0)
    assert model.units_per_cart == pytest.approx({c: 0.75 for c in ELASTICITY}, abs=0.01)


def test_demand_fn_scales_units_per_view_by_the_last_weeks_daily_views(synthetic):
    model = demand.fit(synthetic, rounds=20)
    rows = feature_rows(1, "books")
    prices = np.array([[18.0, 20.0]])
    np.testing.assert_allclose(model.demand_fn(rows)(prices), 10 * model.units_per_view(rows, prices))


def test_fit_refuses_a_frame_without_a_usable_day():
    rows = feature_rows(2, "books").assign(avg_price_usd=np.nan, views=0, add_to_carts=0, units=0)
    with pytest.raises(ValueError, match="no SKU-day with views and a shown price"):
        demand.fit(rows)
