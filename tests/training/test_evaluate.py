"""Evaluation against the simulator's ground truth."""

import warnings

import pandas as pd

from tests.training.test_shipping_model import parcels
from training import evaluate, shipping


def test_a_holdout_without_simulated_orders_has_no_shipping_truth_metrics(tmp_path):
    # After `make demo` the holdout's newest orders are the live shoppers', which the batch truth does not hold.
    pd.DataFrame({"order_id": ["ORD-batch-1"], "rate_card_cost": [7.5], "is_anomaly": [False]}).to_parquet(
        tmp_path / "shipments.parquet")
    holdout = parcels(50, seed=3).drop(columns=["is_anomaly"])
    model = shipping.fit(parcels(500, seed=1), rounds=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Mean of empty slice"
        assert evaluate.shipping_metrics(model, holdout, tmp_path) == {"truth_orders": 0.0}
