"""Evaluation of trained models against the simulator's ground truth (never used in training).

Pricing, on the SKUs of the last day of the data (their features as of that day):
- elasticity recovery: the model's implied elasticity at the SKU's typical price against the true one;
- expected profit, under the true demand, of the optimizer's prices against the oracle and against the
  rule-based strategy. The oracle is the same optimizer fed the true demand: the best prices the
  guardrails allow. The guardrails are business rules that bind the oracle as much as the model (the
  competitor band caps low-elasticity SKUs far below their unconstrained optimum), so the unconstrained
  optimum (`Truth.optimal_price`) is reported beside it, not used as the target. Prices are the settled
  ones (no daily change limit: it only slows the walk towards them); first-day prices are reported too.
Shipping, on the holdout orders: MAE against the noise floor (the error of the true rate card, the best
possible estimate of a noisy invoice), and anomaly precision and recall against the injected anomalies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pricing.guardrails import DEFAULT_GUARDRAILS, Guardrails
from pricing.optimizer import implied_elasticity, optimize
from pricing.rules import rule_based
from simulator.truth import Truth, load
from training.demand import DemandModel, reference_price
from training.registry import PRICING_MODEL
from training.shipping import ShippingModel


def _nan_if_missing(frame: pd.DataFrame, column: str) -> np.ndarray:
    return frame[column].astype(float).to_numpy() if column in frame else np.full(len(frame), np.nan)


def true_profit(truth: Truth, skus: np.ndarray, prices: np.ndarray, day) -> np.ndarray:
    """Expected profit per day of each SKU at `prices` under the true demand, cost and competitors."""
    competitor = truth.competitor_min_price(skus, day)
    return (prices - truth.unit_cost(skus, day)) * truth.expected_demand(skus, prices, competitor, day)


def true_demand_fn(truth: Truth, skus: np.ndarray, day):
    """The true expected units of each SKU at a price matrix [skus, k], competitors as they were that day."""
    competitor = truth.competitor_min_price(skus, day)

    def expected_units(prices: np.ndarray) -> np.ndarray:
        return truth.expected_demand(np.broadcast_to(skus[:, None], prices.shape), prices,
                                     np.broadcast_to(competitor[:, None], prices.shape), day)

    return expected_units


def pricing_metrics(model: DemandModel, frame: pd.DataFrame, truth: Truth,
                    rails: Guardrails = DEFAULT_GUARDRAILS) -> dict[str, float]:
    """Truth metrics of the demand model on the last day of `frame` (training-set rows)."""
    dates = pd.to_datetime(frame["date"])
    last = frame.loc[dates == dates.max()].reset_index(drop=True)
    last = last.loc[np.isfinite(reference_price(last)) & last["unit_cost_usd"].notna()].reset_index(drop=True)
    day = dates.max().date()
    skus = last["sku"].to_numpy()
    demand_fn = model.demand_fn(last.assign(sku_views_7d=7.0))  # one view a day: the optimum ignores traffic

    estimated = implied_elasticity(demand_fn, reference_price(last), eps=0.1)
    error = np.abs(estimated / truth.elasticity(skus) - 1)

    market = dict(unit_cost=last["unit_cost_usd"].to_numpy(float),
                  competitor_price=_nan_if_missing(last, "competitor_min_price_usd"),
                  map_price=_nan_if_missing(last, "map_price_usd"), rails=rails)
    settled = optimize(demand_fn, **market).prices
    first_day = optimize(demand_fn, current_price=_nan_if_missing(last, "last_price_usd"), **market).prices
    rules = rule_based(**market).prices
    oracle = optimize(true_demand_fn(truth, skus, day), **market).prices
    unconstrained = truth.optimal_price(skus, day)
    prices = {"optimizer": settled, "first_day": first_day, "rules": rules, "oracle": oracle,
              "unconstrained": unconstrained}
    profit = {name: float(np.sum(true_profit(truth, skus, p, day))) for name, p in prices.items()}
    return {
        "truth_elasticity_median_rel_error": float(np.nanmedian(error)),
        "truth_elasticity_skus": float(np.isfinite(error).sum()),
        "truth_profit_optimizer_vs_oracle": profit["optimizer"] / profit["oracle"],
        "truth_profit_optimizer_vs_rules": profit["optimizer"] / profit["rules"],
        "truth_profit_first_day_vs_oracle": profit["first_day"] / profit["oracle"],
        "truth_profit_rules_vs_oracle": profit["rules"] / profit["oracle"],
        "truth_profit_oracle_vs_unconstrained": profit["oracle"] / profit["unconstrained"],
    }


def shipping_metrics(model: ShippingModel, frame: pd.DataFrame, truth_dir: Path) -> dict[str, float]:
    """Truth metrics of the shipping model on `frame` (gold.shipping_features rows, the holdout)."""
    shipments = pd.read_parquet(Path(truth_dir) / "shipments.parquet",
                                columns=["order_id", "rate_card_cost", "is_anomaly"])
    rows = frame.merge(shipments, on="order_id", how="inner", validate="one_to_one")
    if rows.empty:  # a holdout of orders the simulation did not make (after `make demo`: its shoppers')
        return {"truth_orders": 0.0}
    actual = rows["actual_shipping_cost_usd"].to_numpy(dtype=float)
    normal = ~rows["is_anomaly"].to_numpy()
    model_error = np.abs(model.expected_cost(rows) - actual)[normal]
    floor = np.abs(rows["rate_card_cost"].to_numpy() - actual)[normal]
    flagged, injected = model.is_anomaly(rows, actual), rows["is_anomaly"].to_numpy()
    true_positives = float(np.sum(flagged & injected))
    return {
        "truth_mae_usd": float(model_error.mean()),
        "truth_noise_floor_mae_usd": float(floor.mean()),
        "truth_mae_vs_noise_floor": float(model_error.mean() / floor.mean()),
        "truth_anomaly_precision": true_positives / max(float(flagged.sum()), 1.0),
        "truth_anomaly_recall": true_positives / max(float(injected.sum()), 1.0),
        "truth_orders": float(len(rows)),
    }


def against_truth(name: str, model, frame: pd.DataFrame, truth_dir: Path) -> dict[str, float]:
    if name == PRICING_MODEL:
        return pricing_metrics(model, frame, load(truth_dir))
    return shipping_metrics(model, frame, truth_dir)
