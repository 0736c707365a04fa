"""Readout frames: which counts feed which metric, the whole readout of a tiny experiment, and the
simulator's true values."""

import math
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from readout.frames import READOUT_COLUMNS, readout_rows, true_lifts, true_values
from readout.stats import compare_means, compare_proportions

AT = datetime(2026, 11, 1, 12, 0)
VISITORS = pd.DataFrame([
    # variant, visitor, added to cart, purchased, abandoned, revenue, margin
    ("rule_based", "c1", True, True, False, 10.0, 4.0),
    ("rule_based", "c2", True, False, True, 0.0, 0.0),
    ("rule_based", "c3", False, False, False, 0.0, 0.0),
    ("rule_based", "c4", False, False, False, 0.0, 0.0),
    ("model", "t1", True, True, False, 20.0, 6.0),
    ("model", "t2", True, True, True, 10.0, 2.0),  # bought one line, abandoned another
    ("model", "t3", False, False, False, 0.0, 0.0),
], columns=["variant", "visitor_id", "added_to_cart", "purchased", "abandoned", "revenue_usd", "margin_usd"])


def test_readout_of_a_tiny_experiment():
    got = readout_rows(VISITORS, "pricing_model_vs_rules", "rule_based", {"model": 50, "rule_based": 50}, "r1", AT)
    srm = math.erfc(math.sqrt(((4 - 3.5) ** 2 / 3.5 * 2) / 2))  # chi2 = 0.142857 on 1 df
    rev_c, rev_t = [10.0, 0, 0, 0], [20.0, 10.0, 0]
    mar_c, mar_t = [4.0, 0, 0, 0], [6.0, 2.0, 0]
    compared = {
        "add_to_cart_rate": (2 / 3, compare_proportions(2, 4, 2, 3), 0.5),
        "conversion_rate": (2 / 3, compare_proportions(1, 4, 2, 3), 0.25),
        "cart_abandonment_rate": (0.5, compare_proportions(1, 2, 1, 2), 0.5),  # over carting visitors: 2 and 2
        "revenue_per_visitor": (10.0, compare_means(np.array(rev_c), np.array(rev_t)), 2.5),
        "margin_per_visitor": (8 / 3, compare_means(np.array(mar_c), np.array(mar_t)), 1.0),
    }
    rows = []
    for metric, (value, c, control_value) in compared.items():
        rows.append(("r1", AT, "pricing_model_vs_rules", metric, "rule_based", True, 4, control_value,
                     None, None, None, None, srm))
        rows.append(("r1", AT, "pricing_model_vs_rules", metric, "model", False, 3, value,
                     c.lift, c.ci_low, c.ci_high, c.p_value, srm))
    expected = pd.DataFrame(rows, columns=READOUT_COLUMNS)
    pd.testing.assert_frame_equal(got, expected)
    lifts = got.set_index(["metric", "variant"])["lift"]
    assert lifts[("conversion_rate", "model")] == pytest.approx(8 / 3 - 1)
    assert lifts[("revenue_per_visitor", "model")] == pytest.approx(3.0)
    assert lifts[("cart_abandonment_rate", "model")] == pytest.approx(0.0)


def test_bad_input_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="not in experiment"):
        readout_rows(VISITORS, "e", "rule_based", {"rule_based": 100}, "r", AT)
    with pytest.raises(ValueError, match="has no visitors"):
        readout_rows(VISITORS[VISITORS["variant"] == "model"], "e", "rule_based",
                     {"model": 50, "rule_based": 50}, "r", AT)
    with pytest.raises(ValueError, match="lack columns"):
        readout_rows(VISITORS.drop(columns="margin_usd"), "e", "rule_based", {"model": 50, "rule_based": 50}, "r", AT)


def test_true_values_from_the_decisions_truth():
    decisions = pd.DataFrame([
        # variant, visitor, P(cart), P(purchase), E[revenue], E[margin]
        ("rule_based", "a", 0.5, 0.3, 3.0, 1.0),
        ("rule_based", "a", 0.2, 0.12, 1.2, 0.4),
        ("model", "b", 0.4, 0.24, 2.4, 1.2),
    ], columns=["variant", "visitor_id", "p_add_to_cart", "p_purchase", "expected_revenue_usd", "expected_margin_usd"])
    truth = true_values(decisions).set_index(["metric", "variant"])["true_value"]
    # visitor a: P(any cart) = 1 - 0.5 * 0.8 = 0.6; P(any purchase) = 1 - 0.7 * 0.88 = 0.384;
    # P(no line abandoned) = (1 - 0.2) * (1 - 0.08) = 0.736; P(carted, none abandoned) = 0.736 - 0.4 = 0.336,
    # so P(carted and abandoned) = 0.6 - 0.336 = 0.264 and the abandonment rate 0.264 / 0.6 = 0.44
    assert truth[("add_to_cart_rate", "rule_based")] == pytest.approx(0.6)
    assert truth[("conversion_rate", "rule_based")] == pytest.approx(0.384)
    assert truth[("cart_abandonment_rate", "rule_based")] == pytest.approx(0.44)
    assert truth[("revenue_per_visitor", "rule_based")] == pytest.approx(4.2)
    assert truth[("margin_per_visitor", "rule_based")] == pytest.approx(1.4)
    # one line: abandonment given a cart is 1 - P(purchase | cart) = 0.4
    assert truth[("cart_abandonment_rate", "model")] == pytest.approx(0.4)
    lifts = true_lifts(true_values(decisions), "rule_based").set_index("metric")["true_lift"]
    assert lifts["conversion_rate"] == pytest.approx(0.24 / 0.384 - 1)
    assert lifts["margin_per_visitor"] == pytest.approx(1.2 / 1.4 - 1)


def test_measured_lift_covers_the_simulated_truth():
    """Visitors who each see 3 prices, the treatment's purchase probability 25% higher: the readout's
    conversion and revenue intervals contain the true lift computed from the same decisions."""
    rng = np.random.default_rng(3)
    n = 6000
    variant = np.repeat(["rule_based", "model"], n * 3)
    p_cart = rng.uniform(0.05, 0.3, n * 6) * np.where(variant == "model", 1.25, 1.0)
    decisions = pd.DataFrame({"variant": variant, "visitor_id": np.repeat(np.arange(n * 2), 3).astype(str),
                              "p_add_to_cart": p_cart, "p_purchase": p_cart * 0.6,
                              "expected_revenue_usd": p_cart * 0.6 * 20.0, "expected_margin_usd": p_cart * 0.6 * 8.0})
    carted = rng.random(n * 6) < p_cart
    bought = carted & (rng.random(n * 6) < 0.6)
    lines = decisions.assign(added_to_cart=carted, purchased=bought, abandoned=carted & ~bought,
                             revenue_usd=bought * 20.0, margin_usd=bought * 8.0)
    visitors = lines.groupby(["variant", "visitor_id"], as_index=False).agg(
        added_to_cart=("added_to_cart", "any"), purchased=("purchased", "any"), abandoned=("abandoned", "any"),
        revenue_usd=("revenue_usd", "sum"), margin_usd=("margin_usd", "sum"))
    got = readout_rows(visitors, "e", "rule_based", {"rule_based": 50, "model": 50}, "r", AT)
    truth = true_lifts(true_values(decisions), "rule_based").set_index("metric")["true_lift"]
    measured = got[~got["is_control"]].set_index("metric")
    for metric in ("conversion_rate", "add_to_cart_rate", "revenue_per_visitor", "margin_per_visitor",
                   "cart_abandonment_rate"):
        assert measured.loc[metric, "ci_low"] <= truth[metric] <= measured.loc[metric, "ci_high"], metric
    assert truth["revenue_per_visitor"] == pytest.approx(0.25, abs=0.03)
    assert measured.loc["conversion_rate", "p_value"] < 0.01
