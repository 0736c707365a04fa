"""The shipping readout's metrics on hand-made visitors, and their true values from hand-made session truth."""

from datetime import datetime

import pandas as pd
import pytest

from readout.frames import readout_rows, true_lifts
from readout.shipping import SHIPPING_METRICS, true_shipping_values


def test_the_shipping_readout_measures_conversion_order_value_margin_and_abandonment():
    visitors = pd.DataFrame({
        "variant": ["free_from_75"] * 4 + ["free_from_50"] * 4, "visitor_id": list("abcdefgh"),
        "purchased": [True, False, False, True, True, True, True, False],
        "abandoned": [False, True, True, False, False, False, False, True],
        "revenue_usd": [40.0, 0, 0, 80.0, 50.0, 60.0, 55.0, 0],
        "shipping_margin_usd": [1.0, 0, 0, -6.0, -5.0, -6.0, 0.5, 0]})
    rows = readout_rows(visitors, "free_shipping_50_vs_75", "free_from_75", {"free_from_75": 50, "free_from_50": 50},
                        "r", datetime(2026, 12, 5), SHIPPING_METRICS)
    got = rows.set_index(["metric", "variant"])
    assert list(got.index.get_level_values(0).unique()) == list(SHIPPING_METRICS)
    # 2/4 vs 3/4 bought; order value 60 vs 55 USD per buyer; margin -1.25 vs -2.625 per visitor
    assert got.loc[("conversion_rate", "free_from_50"), ["value", "lift"]].tolist() == pytest.approx([0.75, 0.5])
    assert got.loc[("cart_abandonment_rate", "free_from_50"), "lift"] == pytest.approx(0.25 / 0.5 - 1)
    assert got.loc[("average_order_value", "free_from_75"), "value"] == 60.0
    assert got.loc[("average_order_value", "free_from_50"), ["value", "lift"]].tolist() == pytest.approx(
        [55.0, 55 / 60 - 1])
    assert got.loc[("shipping_margin_per_visitor", "free_from_50"), ["value", "lift"]].tolist() == pytest.approx(
        [-2.625, -2.625 / -1.25 - 1])
    assert got.loc[("conversion_rate", "free_from_75"), "lift"] is None or pd.isna(
        got.loc[("conversion_rate", "free_from_75"), "lift"])


def test_true_values_combine_a_visitors_sessions():
    sessions = pd.DataFrame({
        "variant": ["free_from_75", "free_from_75", "free_from_75", "free_from_50"],
        "visitor_id": ["a", "a", "b", "c"],
        "p_checkout": [0.5, 0.4, 0.3, 0.6],
        "expected_revenue_usd": [20.0, 16.0, 9.0, 36.0],
        "expected_shipping_margin_usd": [0.5, 0.2, 0.3, -1.0]})
    truth = true_shipping_values(sessions).set_index(["metric", "variant"])["true_value"]
    # a buys with 1 - 0.5 * 0.6 = 0.7, abandons with 1 - 0.5 * 0.4 = 0.8; b: 0.3 and 0.7
    assert truth["conversion_rate", "free_from_75"] == pytest.approx((0.7 + 0.3) / 2)
    assert truth["cart_abandonment_rate", "free_from_75"] == pytest.approx((0.8 + 0.7) / 2)
    assert truth["average_order_value", "free_from_75"] == pytest.approx(45.0 / 1.0)
    assert truth["shipping_margin_per_visitor", "free_from_75"] == pytest.approx(1.0 / 2)
    assert truth["average_order_value", "free_from_50"] == pytest.approx(60.0)
    lifts = true_lifts(true_shipping_values(sessions), "free_from_75").set_index("metric")["true_lift"]
    assert lifts["conversion_rate"] == pytest.approx(0.6 / 0.5 - 1)
    assert lifts["shipping_margin_per_visitor"] == pytest.approx(-1.0 / 0.5 - 1)
