"""The demand model: how a SKU's add-to-cart rate per view responds to its price, learned with LightGBM.

Demand is read as a funnel: expected units per day = views per day x P(add to cart | view, price, context)
x units per cart. Price moves the add-to-cart step (the shopper sees the price on the product page);
units per cart is measured per category. The add-to-cart model is a LightGBM Poisson regression of a
SKU-day's add-to-carts with log(views) as offset, monotone decreasing in price and increasing in the
competitors' price, so every price-response curve slopes down and the optimizer has a maximum.

Input frames carry the columns of `gold.pricing_features` (docs/features.md) plus the price to evaluate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd

# Model inputs, in booster column order, with their monotone constraint (-1: demand falls as it grows).
DEMAND_FEATURES: tuple[tuple[str, int], ...] = (
    ("log_price_ratio", -1),  # log(price / the SKU's typical price of the last 28 days)
    ("log_competitor_ratio", 1),  # log(competitor minimum / typical price); 0 without a competitor
    ("has_competitor", 0),
    ("category_code", 0),
    ("log_typical_price", 0),
    ("sku_conversion_28d", 0),
    ("sku_conversion_90d", 0),
    ("anchor_score", 0),
    ("day_of_week", 0),
    ("category_views_7d_vs_28d", 0),
)
FEATURE_NAMES = tuple(name for name, _ in DEMAND_FEATURES)
# The columns `design_matrix` reads, plus the SKU and the price to evaluate: the pyfunc's input signature.
INPUT_COLUMNS = ("sku", "category", "typical_price_usd", "last_price_usd", "competitor_min_price_usd",
                 "sku_conversion_28d", "sku_conversion_90d", "anchor_score", "day_of_week",
                 "category_views_7d_vs_28d", "price_usd")

DEFAULT_PARAMS = {
    "objective": "poisson",
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_data_in_leaf": 200,
    "monotone_constraints": [sign for _, sign in DEMAND_FEATURES],
    "monotone_constraints_method": "advanced",
    "num_threads": 2,
    "seed": 7,
    "deterministic": True,
    "verbose": -1,
}
DEFAULT_ROUNDS = 300


def reference_price(features: pd.DataFrame) -> np.ndarray:
    """The SKU's price level that ratios are taken against: typical price, else last price, else list."""
    level = features["typical_price_usd"].astype(float)
    for fallback in ("last_price_usd", "list_price_usd"):
        if fallback in features:
            level = level.fillna(features[fallback].astype(float))
    return level.to_numpy()


def design_matrix(features: pd.DataFrame, prices: np.ndarray, categories: tuple[str, ...]) -> np.ndarray:
    """Model inputs for every (feature row, price) pair: shape [rows * prices per row, features].

    `prices` is [rows] or [rows, grid]; the matrix is row-major over (row, grid point), so a
    prediction reshaped to `prices.shape` lines up with it.
    """
    prices = np.asarray(prices, dtype=float)
    grid = prices.reshape(len(features), -1)
    typical = reference_price(features)
    competitor = features["competitor_min_price_usd"].astype(float).to_numpy()
    has_competitor = np.isfinite(competitor) & (competitor > 0)
    codes = pd.Categorical(features["category"], categories=list(categories)).codes.astype(float)
    per_row = np.column_stack([
        np.where(has_competitor, np.log(np.where(has_competitor, competitor, 1.0) / typical), 0.0),
        has_competitor.astype(float),
        np.where(codes < 0, np.nan, codes),
        np.log(typical),
        features["sku_conversion_28d"].astype(float).to_numpy(),
        features["sku_conversion_90d"].astype(float).to_numpy(),
        features["anchor_score"].astype(float).to_numpy(),
        features["day_of_week"].astype(float).to_numpy(),
        features["category_views_7d_vs_28d"].astype(float).to_numpy(),
    ])
    log_ratio = np.log(grid / typical[:, None]).reshape(-1, 1)
    return np.hstack([log_ratio, np.repeat(per_row, grid.shape[1], axis=0)])


@dataclass
class DemandModel:
    """A trained demand model: the add-to-cart booster, its category vocabulary and units per cart."""

    booster: lgb.Booster
    categories: tuple[str, ...]
    units_per_cart: dict[str, float]
    metadata: dict = field(default_factory=dict)

    def cart_rate(self, features: pd.DataFrame, prices: np.ndarray) -> np.ndarray:
        """P(add to cart | view) for each row at each price; the shape of `prices`."""
        prices = np.asarray(prices, dtype=float)
        raw = self.booster.predict(design_matrix(features, prices, self.categories), raw_score=True, num_threads=1)
        return np.exp(raw).reshape(prices.shape)

    def units_per_view(self, features: pd.DataFrame, prices: np.ndarray) -> np.ndarray:
        """Expected units per product view: the conversion curve of the price-response."""
        upc = features["category"].map(self.units_per_cart).fillna(np.mean(list(self.units_per_cart.values())))
        upc = upc.to_numpy(dtype=float)
        prices = np.asarray(prices, dtype=float)
        shape = (len(features),) + (1,) * (prices.ndim - 1)
        return self.cart_rate(features, prices) * upc.reshape(shape)

    def demand_fn(self, features: pd.DataFrame) -> Callable[[np.ndarray], np.ndarray]:
        """price matrix [rows, grid] -> expected units per day, for `pricing.optimizer`.

        Views per day are the SKU's last 7 days' average; they scale demand but not the best price.
        """
        views = (features["sku_views_7d"].astype(float).fillna(0.0) / 7.0).to_numpy()

        def expected_units(prices: np.ndarray) -> np.ndarray:
            prices = np.asarray(prices, dtype=float)
            shape = (len(features),) + (1,) * (prices.ndim - 1)
            return self.units_per_view(features, prices) * views.reshape(shape)

        return expected_units


def training_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """SKU-days usable for training: some views, a shown price, and a price level to compare it with."""
    usable = (frame["views"] > 0) & frame["avg_price_usd"].notna() & np.isfinite(reference_price(frame))
    return frame.loc[usable].reset_index(drop=True)


def fit(frame: pd.DataFrame, params: dict | None = None, rounds: int = DEFAULT_ROUNDS) -> DemandModel:
    """Train on SKU-day rows: `gold.pricing_daily` labels joined point-in-time to `gold.pricing_features`.

    `frame` needs the feature columns plus `views`, `add_to_carts`, `units` and `avg_price_usd` (the
    price shown that day). Rows without views or price are left out (`training_rows`).
    """
    rows = training_rows(frame)
    if rows.empty:
        raise ValueError("no SKU-day with views and a shown price to train the demand model on")
    categories = tuple(sorted(rows["category"].dropna().unique()))
    X = design_matrix(rows, rows["avg_price_usd"].to_numpy(), categories)
    dataset = lgb.Dataset(X, rows["add_to_carts"].to_numpy(dtype=float), init_score=np.log(rows["views"].to_numpy()),
                          feature_name=list(FEATURE_NAMES), categorical_feature=["category_code"], free_raw_data=False)
    booster = lgb.train({**DEFAULT_PARAMS, **(params or {})}, dataset, num_boost_round=rounds)
    by_category = rows.groupby("category")[["units", "add_to_carts"]].sum()
    units_per_cart = (by_category["units"] / by_category["add_to_carts"].where(by_category["add_to_carts"] > 0))
    return DemandModel(booster, categories, units_per_cart.dropna().to_dict())


def poisson_deviance(model: DemandModel, frame: pd.DataFrame) -> float:
    """Mean Poisson deviance of add-to-carts on `frame` (lower is better): the holdout score of promotion."""
    rows = training_rows(frame)
    expected = model.cart_rate(rows, rows["avg_price_usd"].to_numpy()) * rows["views"].to_numpy()
    observed = rows["add_to_carts"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_term = np.where(observed > 0, observed * np.log(observed / expected), 0.0)
    return float(np.mean(2 * (log_term - (observed - expected))))
