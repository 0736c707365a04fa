"""Readout frames: per-visitor outcomes -> one row per metric and variant (gold.experiment_readout),
and the simulator's true value of the same metrics from the per-decision truth.

Metrics, all over the experiment's visitors (its unit: customer or session):
- `add_to_cart_rate`: share of visitors who added something to the cart;
- `conversion_rate`: share of visitors who bought something;
- `cart_abandonment_rate`: share of carting visitors who abandoned a cart line;
- `revenue_per_visitor`, `margin_per_visitor`: USD per visitor (margin at the true unit cost of the day).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from lakehouse.schemas.readout import EXPERIMENT_READOUT
from readout.stats import Comparison, compare_means, compare_proportions, srm_p_value

NOT_COMPARABLE = Comparison(float("nan"), float("nan"), float("nan"), float("nan"))

# metric -> (kind, outcome column, the rows it is measured over: all visitors (None), or those with that
# flag set). Kinds: `rate`, a share (z-test); `mean`, USD per visitor (Welch).
Metrics = dict[str, tuple[str, str, str | None]]
PRICING_METRICS: Metrics = {
    "add_to_cart_rate": ("rate", "added_to_cart", None),
    "conversion_rate": ("rate", "purchased", None),
    "cart_abandonment_rate": ("rate", "abandoned", "added_to_cart"),
    "revenue_per_visitor": ("mean", "revenue_usd", None),
    "margin_per_visitor": ("mean", "margin_usd", None),
}
METRICS = tuple(PRICING_METRICS)
VISITOR_COLUMNS = ("variant", "visitor_id", "added_to_cart", "purchased", "abandoned", "revenue_usd", "margin_usd")
READOUT_COLUMNS = EXPERIMENT_READOUT.fieldNames()


def readout_rows(visitors: pd.DataFrame, experiment: str, control: str, weights: dict[str, float],
                 readout_id: str, computed_at: datetime, metrics: Metrics = PRICING_METRICS) -> pd.DataFrame:
    """Per-visitor outcomes (one row per variant and visitor: `variant`, `visitor_id` and the columns
    `metrics` read; `VISITOR_COLUMNS` for pricing) -> the readout.

    `weights`: the configured split (variant -> percent). Grain: one row per metric and observed
    variant, the control's lift, interval and p-value null; every row carries the SRM p-value.
    """
    needed = {"variant", "visitor_id"} | {c for _, column, over in metrics.values() for c in (column, over) if c}
    missing = needed - set(visitors.columns)
    if missing:
        raise ValueError(f"visitor outcomes lack columns {sorted(missing)}")
    unknown = set(visitors["variant"]) - set(weights)
    if unknown:
        raise ValueError(f"variants {sorted(unknown)} are not in experiment {experiment!r}'s configuration "
                         f"({sorted(weights)})")
    if not (visitors["variant"] == control).any():
        raise ValueError(f"the control variant {control!r} of {experiment!r} has no visitors: nothing to compare")
    counts = visitors.groupby("variant").size()
    srm = srm_p_value(np.array([counts.get(v, 0) for v in weights]), np.array(list(weights.values())))
    groups = {variant: frame for variant, frame in visitors.groupby("variant")}
    rows = []
    for metric in metrics:
        for variant in sorted(groups, key=lambda v: (v != control, v)):
            value, comparison = _measure(metrics[metric], groups[control], groups[variant])
            rows.append({
                "readout_id": readout_id, "computed_at": computed_at, "experiment": experiment, "metric": metric,
                "variant": variant, "is_control": variant == control, "visitors": int(counts[variant]),
                "value": value,
                **({"lift": None, "ci_low": None, "ci_high": None, "p_value": None} if variant == control else
                   {"lift": comparison.lift, "ci_low": comparison.ci_low, "ci_high": comparison.ci_high,
                    "p_value": comparison.p_value}),
                "srm_p_value": srm,
            })
    return pd.DataFrame(rows, columns=READOUT_COLUMNS)


def _measure(metric: tuple[str, str, str | None], control: pd.DataFrame, treatment: pd.DataFrame):
    """(treatment's value, its comparison with the control) for one metric's (kind, column, over)."""
    kind, outcome, over = metric
    c, t = (frame if over is None else frame[frame[over]] for frame in (control, treatment))
    value = float(t[outcome].mean()) if len(t) else float("nan")
    if min(len(c), len(t)) < (2 if kind == "mean" else 1):
        return value, NOT_COMPARABLE
    if kind == "mean":
        return value, compare_means(c[outcome], t[outcome])
    return value, compare_proportions(int(c[outcome].sum()), len(c), int(t[outcome].sum()), len(t))


def true_values(decisions: pd.DataFrame) -> pd.DataFrame:
    """The simulator's expected value of each metric per variant, given who saw which prices.

    `decisions`: one row per decision with `variant`, `visitor_id` and the truth's `p_add_to_cart`,
    `p_purchase`, `expected_revenue_usd`, `expected_margin_usd` (lines independent given the price).
    Grain: one row per metric and variant.
    """
    d = decisions.assign(
        no_cart=1 - decisions["p_add_to_cart"],
        no_purchase=1 - decisions["p_purchase"],
        no_abandon=1 - (decisions["p_add_to_cart"] - decisions["p_purchase"]))
    per_visitor = d.groupby(["variant", "visitor_id"]).agg(
        no_cart=("no_cart", "prod"), no_purchase=("no_purchase", "prod"), no_abandon=("no_abandon", "prod"),
        revenue=("expected_revenue_usd", "sum"), margin=("expected_margin_usd", "sum")).reset_index()
    per_visitor = per_visitor.assign(
        carts=1 - per_visitor["no_cart"],
        # P(a line carted and abandoned) = P(any cart) - P(carted, nothing abandoned)
        carts_and_abandons=(1 - per_visitor["no_cart"]) - (per_visitor["no_abandon"] - per_visitor["no_cart"]),
        buys=1 - per_visitor["no_purchase"])
    sums = per_visitor.groupby("variant").agg(
        visitors=("visitor_id", "size"), carts=("carts", "sum"), buys=("buys", "sum"),
        carts_and_abandons=("carts_and_abandons", "sum"), revenue=("revenue", "sum"), margin=("margin", "sum"))
    values = pd.DataFrame({
        "add_to_cart_rate": sums["carts"] / sums["visitors"],
        "conversion_rate": sums["buys"] / sums["visitors"],
        "cart_abandonment_rate": sums["carts_and_abandons"] / sums["carts"],
        "revenue_per_visitor": sums["revenue"] / sums["visitors"],
        "margin_per_visitor": sums["margin"] / sums["visitors"],
    })
    return long_true_values(values)


def long_true_values(values: pd.DataFrame) -> pd.DataFrame:
    """A variant-indexed frame of true metric values, one column per metric -> one row per metric and variant."""
    return (values.reset_index().melt(id_vars="variant", var_name="metric", value_name="true_value")
            [["metric", "variant", "true_value"]].sort_values(["metric", "variant"]).reset_index(drop=True))


def true_lifts(truth: pd.DataFrame, control: str) -> pd.DataFrame:
    """`true_values` output -> the true relative lift of every other variant. Grain: metric, variant."""
    base = truth[truth["variant"] == control].set_index("metric")["true_value"]
    others = truth[truth["variant"] != control]
    return others.assign(true_lift=others["true_value"] / others["metric"].map(base) - 1).reset_index(drop=True)
