"""The silver -> gold quality rules (spark_jobs.gold), one suite per gold table. The silver suites are part of
each source's declaration (lakehouse.sources)."""

from __future__ import annotations

from lakehouse.quality import A_GREATER_THAN_B, BETWEEN, COMPOUND_UNIQUE, NOT_NULL, UNIQUE, Rule, Severity

# Keys and arithmetic that cannot go wrong unless a feature function broke are `fail`; rows a model cannot
# learn from (no category, no cost, no parcel, no rate card, no invoice) are `drop`; odd but possible values
# `warn`.
WARN, DROP, FAIL = Severity.WARN, Severity.DROP, Severity.FAIL


def _rate(column: str) -> Rule:
    return Rule(f"{column}_in_0_1", WARN, BETWEEN, {"column": column, "min_value": 0, "max_value": 1})


GOLD_SUITES: dict[str, tuple[Rule, ...]] = {
    "pricing_daily": (
        Rule("sku_present", FAIL, NOT_NULL, {"column": "sku"}),
        Rule("key_unique", FAIL, COMPOUND_UNIQUE, {"column_list": ["sku", "date"]}),
        Rule("units_non_negative", FAIL, BETWEEN, {"column": "units", "min_value": 0}),
        # Events of a SKU silver.products does not know (or before its launch) have no category.
        Rule("category_present", DROP, NOT_NULL, {"column": "category"}),
        Rule("avg_price_positive", WARN, BETWEEN, {"column": "avg_price_usd", "min_value": 0, "strict_min": True}),
        Rule("unit_cost_present", WARN, NOT_NULL, {"column": "unit_cost_usd"}),
    ),
    "pricing_features": (
        Rule("feature_time_present", FAIL, NOT_NULL, {"column": "feature_time"}),
        Rule("key_unique", FAIL, COMPOUND_UNIQUE, {"column_list": ["sku", "as_of_date"]}),
        Rule("margin_at_most_100", FAIL, BETWEEN, {"column": "margin_pct", "max_value": 100}),
        Rule("anchor_score_non_negative", FAIL, BETWEEN, {"column": "anchor_score", "min_value": 0}),
        # Without a supplier cost there is no margin to optimise.
        Rule("unit_cost_present", DROP, NOT_NULL, {"column": "unit_cost_usd"}),
        *(_rate(f"{level}_conversion_{n}d") for level in ("sku", "category") for n in (7, 28, 90)),
        Rule("last_price_present", WARN, NOT_NULL, {"column": "last_price_usd"}),
        Rule("competitor_price_index_positive", WARN, BETWEEN,
             {"column": "competitor_price_index", "min_value": 0, "strict_min": True}),
    ),
    "demand_profile": (
        Rule("key_unique", FAIL, COMPOUND_UNIQUE, {"column_list": ["sku", "day_of_week", "hour_of_day"]}),
        Rule("day_of_week_iso", FAIL, BETWEEN, {"column": "day_of_week", "min_value": 1, "max_value": 7}),
        Rule("hour_of_day_valid", FAIL, BETWEEN, {"column": "hour_of_day", "min_value": 0, "max_value": 23}),
        Rule("expected_views_non_negative", FAIL, BETWEEN, {"column": "expected_views_per_hour", "min_value": 0}),
        Rule("expected_add_to_carts_non_negative", FAIL, BETWEEN,
             {"column": "expected_add_to_carts_per_hour", "min_value": 0}),
        # A category hour without a single event in the profile's weeks: possible, but worth a look.
        Rule("expected_views_present", WARN, NOT_NULL, {"column": "expected_views_per_hour"}),
    ),
    "shipping_features": (
        Rule("order_id_unique", FAIL, UNIQUE, {"column": "order_id"}),
        Rule("billable_at_least_actual", FAIL, A_GREATER_THAN_B,
             {"column_A": "billable_weight_kg", "column_B": "actual_weight_kg", "or_equal": True,
              "ignore_row_if": "either_value_is_missing"}),
        Rule("rate_card_cost_positive", FAIL, BETWEEN,
             {"column": "rate_card_cost_usd", "min_value": 0, "strict_min": True}),
        Rule("zone_known", DROP, NOT_NULL, {"column": "delivery_zone"}),
        Rule("carrier_known", DROP, NOT_NULL, {"column": "carrier"}),
        # Null when a line's product has no measures or lines of the order are missing (features.shipping).
        Rule("parcel_measured", DROP, NOT_NULL, {"column": "actual_weight_kg"}),
        Rule("rate_card_found", DROP, NOT_NULL, {"column": "rate_card_cost_usd"}),
        Rule("invoice_present", DROP, NOT_NULL, {"column": "actual_shipping_cost_usd"}),
        Rule("invoice_non_negative", DROP, BETWEEN, {"column": "actual_shipping_cost_usd", "min_value": 0}),
        Rule("shipping_charged_present", WARN, NOT_NULL, {"column": "shipping_charged_usd"}),
    ),
}
