"""The shipping cost model and its anomaly detector, learned with LightGBM from carriers' invoices.

The model predicts what a carrier will invoice for a parcel from its billable weight, zone, carrier,
service level, dimensions and the published rate card of the order date (`gold.shipping_features`). It
fits log(invoice) with an L1 loss, so it estimates the median invoice and a few overcharged invoices
do not pull it. It learns log(invoice / rate-card price): how invoices depart from the published rates
(a tree fitted to the invoice itself could only approximate the rate card in steps).
The anomaly detector flags an invoice whose log ratio to the expected cost exceeds a threshold set
from the training residuals (a robust z-score).

Input frames carry the columns of `gold.shipping_features` (docs/features.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd

SHIPPING_FEATURES: tuple[str, ...] = (
    "log_rate_card_cost", "billable_weight_kg", "actual_weight_kg", "volume_cm3", "delivery_zone", "is_remote",
    "carrier_code", "service_level_code", "day_of_week",
)
CATEGORICAL = ["carrier_code", "service_level_code"]
DEFAULT_PARAMS = {
    "objective": "l1",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "num_threads": 2,
    "seed": 7,
    "deterministic": True,
    "verbose": -1,
}
DEFAULT_ROUNDS = 150
# Robust z-score above which an invoice is an anomaly; never flag less than 15% over the expectation.
ANOMALY_Z = 4.0
MIN_ANOMALY_RATIO = 1.15


def design_matrix(parcels: pd.DataFrame, carriers: tuple[str, ...], service_levels: tuple[str, ...]) -> np.ndarray:
    """One model input row per parcel, columns in `SHIPPING_FEATURES` order."""
    def codes(column: str, vocabulary: tuple[str, ...]) -> np.ndarray:
        found = pd.Categorical(parcels[column], categories=list(vocabulary)).codes.astype(float)
        return np.where(found < 0, np.nan, found)

    order_date = pd.to_datetime(parcels["order_date"])
    return np.column_stack([
        np.log(parcels["rate_card_cost_usd"].astype(float).to_numpy()),
        parcels["billable_weight_kg"].astype(float).to_numpy(),
        parcels["actual_weight_kg"].astype(float).to_numpy(),
        parcels["volume_cm3"].astype(float).to_numpy(),
        parcels["delivery_zone"].astype(float).to_numpy(),
        parcels["is_remote"].astype(float).to_numpy(),
        codes("carrier", carriers),
        codes("service_level", service_levels),
        order_date.dt.dayofweek.to_numpy(dtype=float),
    ])


@dataclass
class ShippingModel:
    """Expected invoice per parcel, and the log-ratio threshold above which an invoice is anomalous."""

    booster: lgb.Booster
    carriers: tuple[str, ...]
    service_levels: tuple[str, ...]
    anomaly_log_ratio: float
    metadata: dict = field(default_factory=dict)

    def expected_cost(self, parcels: pd.DataFrame) -> np.ndarray:
        """Expected (median) carrier invoice in USD, one per parcel."""
        X = design_matrix(parcels, self.carriers, self.service_levels)
        return np.exp(X[:, 0] + self.booster.predict(X, num_threads=1))

    def anomaly_score(self, parcels: pd.DataFrame, invoiced: np.ndarray) -> np.ndarray:
        """log(invoiced / expected): 0 for a typical invoice, above `anomaly_log_ratio` for an anomaly."""
        return np.log(np.asarray(invoiced, dtype=float) / self.expected_cost(parcels))

    def is_anomaly(self, parcels: pd.DataFrame, invoiced: np.ndarray) -> np.ndarray:
        return self.anomaly_score(parcels, invoiced) > self.anomaly_log_ratio


def training_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Parcels with an invoice and a rate-card price (both positive)."""
    usable = (frame["actual_shipping_cost_usd"] > 0) & (frame["rate_card_cost_usd"] > 0)
    return frame.loc[usable.fillna(False)].reset_index(drop=True)


def fit(frame: pd.DataFrame, params: dict | None = None, rounds: int = DEFAULT_ROUNDS) -> ShippingModel:
    """Train on `gold.shipping_features` rows (one per order) whose label is `actual_shipping_cost_usd`."""
    rows = training_rows(frame)
    if rows.empty:
        raise ValueError("no parcel with an invoice and a rate-card price to train the shipping model on")
    carriers = tuple(sorted(rows["carrier"].dropna().unique()))
    service_levels = tuple(sorted(rows["service_level"].dropna().unique()))
    X = design_matrix(rows, carriers, service_levels)
    # The label is log(invoice / rate card): a starting score would do the same, but LightGBM stops at
    # the first tree when every gradient is equal (a uniform surcharge) and never learns the offset.
    y = np.log(rows["actual_shipping_cost_usd"].to_numpy(dtype=float)) - X[:, 0]
    dataset = lgb.Dataset(X, y, feature_name=list(SHIPPING_FEATURES), categorical_feature=CATEGORICAL)
    booster = lgb.train({**DEFAULT_PARAMS, **(params or {})}, dataset, num_boost_round=rounds)
    residual = y - booster.predict(X, num_threads=1)
    robust_sd = 1.4826 * np.median(np.abs(residual - np.median(residual)))
    threshold = max(ANOMALY_Z * robust_sd, float(np.log(MIN_ANOMALY_RATIO)))
    return ShippingModel(booster, carriers, service_levels, threshold)


def mean_absolute_error(model: ShippingModel, frame: pd.DataFrame) -> float:
    """MAE in USD of the expected cost against the invoices of `frame` (the holdout score of promotion)."""
    rows = training_rows(frame)
    return float(np.mean(np.abs(model.expected_cost(rows) - rows["actual_shipping_cost_usd"].to_numpy(dtype=float))))
