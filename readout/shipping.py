"""The shipping experiment's readout frames: metrics over the visitors who were quoted a shipping charge, and
the simulator's true value of the same metrics from its per-session checkout truth (`simulator.checkout`).

Metrics, over the experiment's visitors (its unit) with at least one shipping decision:
- `conversion_rate`: share who bought;
- `cart_abandonment_rate`: share who abandoned a cart (every quoted visitor had one);
- `average_order_value`: revenue (USD, merchandise) per visitor who bought;
- `shipping_margin_per_visitor`: shipping charged minus the carrier's invoice, USD per visitor.
"""

from __future__ import annotations

import pandas as pd

from readout.frames import Metrics, long_true_values

SHIPPING_METRICS: Metrics = {
    "conversion_rate": ("rate", "purchased", None),
    "cart_abandonment_rate": ("rate", "abandoned", None),
    "average_order_value": ("mean", "revenue_usd", "purchased"),
    "shipping_margin_per_visitor": ("mean", "shipping_margin_usd", None),
}
SHIPPING_VISITOR_COLUMNS = ("variant", "visitor_id", "purchased", "abandoned", "revenue_usd", "shipping_margin_usd")


def true_shipping_values(sessions: pd.DataFrame) -> pd.DataFrame:
    """The simulator's expected value of each metric per variant, given who was quoted what.

    `sessions`: one row per quoted session with `variant`, `visitor_id` and the truth's `p_checkout`,
    `expected_revenue_usd`, `expected_shipping_margin_usd` (a session buys or abandons its whole cart;
    sessions independent). Grain: one row per metric and variant.
    """
    s = sessions.assign(no_buy=1 - sessions["p_checkout"])
    per_visitor = s.groupby(["variant", "visitor_id"]).agg(
        no_buy=("no_buy", "prod"), all_buy=("p_checkout", "prod"), revenue=("expected_revenue_usd", "sum"),
        margin=("expected_shipping_margin_usd", "sum")).reset_index()
    per_visitor = per_visitor.assign(buys=1 - per_visitor["no_buy"], abandons=1 - per_visitor["all_buy"])
    sums = per_visitor.groupby("variant").agg(
        visitors=("visitor_id", "size"), buys=("buys", "sum"), abandons=("abandons", "sum"),
        revenue=("revenue", "sum"), margin=("margin", "sum"))
    values = pd.DataFrame({
        "conversion_rate": sums["buys"] / sums["visitors"],
        "cart_abandonment_rate": sums["abandons"] / sums["visitors"],
        # measured as revenue / buyers: its limit is expected revenue / expected buyers
        "average_order_value": sums["revenue"] / sums["buys"],
        "shipping_margin_per_visitor": sums["margin"] / sums["visitors"],
    })
    return long_true_values(values)
