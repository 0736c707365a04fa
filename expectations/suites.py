"""Every source's quality rules for its bronze -> silver promotion, on the standardized columns.

Chosen from the sources' known defects (docs/simulator.md): out-of-range values and nulls in columns
the downstream features cannot do without are `drop`; nulls in descriptive columns and unknown
categories or zones are `warn`; anything that means the standardization itself broke (unparseable
time, unrecognisable SKU, unknown currency, impossible reference data) is `fail`.
"""

from __future__ import annotations

import great_expectations.expectations as gxe

from expectations.rules import Rule, Severity

WARN, DROP, FAIL = Severity.WARN, Severity.DROP, Severity.FAIL
NotNull = gxe.ExpectColumnValuesToNotBeNull
Between = gxe.ExpectColumnValuesToBeBetween
InSet = gxe.ExpectColumnValuesToBeInSet
Regex = gxe.ExpectColumnValuesToMatchRegex

# Reference sets of the business (the simulator's world).
CURRENCIES = ["USD", "EUR", "GBP", "CNY", "CAD"]
CATEGORIES = ["electronics", "home", "kitchen", "apparel", "beauty", "toys", "sports", "books", "grocery",
              "garden"]
CARRIERS = ["northpost", "rapidparcel", "bluefreight"]
SERVICE_LEVELS = ["standard", "express"]
SEGMENTS = ["new", "returning", "loyal"]
EVENT_TYPES = ["view", "add_to_cart", "remove_from_cart", "checkout", "purchase", "abandon"]
# The API's decision log (serving.decision_log).
ENDPOINTS = ["pricing", "shipping"]
STRATEGIES = ["model", "rule_based"]
ZONES = {"min_value": 1, "max_value": 8}


def _sku_recognised() -> Rule:
    # canonical_sku() returns null for a spelling it does not know: a new format, so stop and look.
    return Rule("sku_recognised", FAIL, NotNull, {"column": "sku"})


def _known_currency() -> Rule:
    return Rule("currency_known", FAIL, InSet, {"column": "currency", "value_set": CURRENCIES})


SUITES: dict[str, tuple[Rule, ...]] = {
    "products": (
        _sku_recognised(),
        _known_currency(),
        Rule("weight_present", DROP, NotNull, {"column": "weight_kg"}),
        Rule("weight_positive", DROP, Between, {"column": "weight_kg", "min_value": 0, "strict_min": True}),
        Rule("length_present", DROP, NotNull, {"column": "length_cm"}),
        Rule("list_price_present", DROP, NotNull, {"column": "list_price"}),
        Rule("list_price_non_negative", DROP, Between, {"column": "list_price", "min_value": 0}),
        Rule("product_name_present", WARN, NotNull, {"column": "product_name"}),
        Rule("brand_present", WARN, NotNull, {"column": "brand"}),
        Rule("category_known", WARN, InSet, {"column": "category", "value_set": CATEGORIES}),
    ),
    "suppliers": (
        _sku_recognised(),
        _known_currency(),
        Rule("unit_cost_non_negative", DROP, Between, {"column": "unit_cost", "min_value": 0}),
        Rule("supplier_name_present", WARN, NotNull, {"column": "supplier_name"}),
        Rule("lead_time_present", WARN, NotNull, {"column": "lead_time_days"}),
    ),
    "market_prices": (
        _sku_recognised(),
        _known_currency(),
        Rule("price_present", DROP, NotNull, {"column": "price"}),
        Rule("price_non_negative", DROP, Between, {"column": "price", "min_value": 0}),
    ),
    "fx_rates": (
        Rule("currency_code", FAIL, Regex, {"column": "currency", "regex": r"^[A-Z]{3}$"}),
        Rule("rate_positive", FAIL, Between, {"column": "rate_to_usd", "min_value": 0, "strict_min": True}),
        Rule("rate_present", FAIL, NotNull, {"column": "rate_to_usd"}),
    ),
    "shipping_rates": (
        _known_currency(),
        Rule("zone_valid", FAIL, Between, {"column": "zone", **ZONES}),
        Rule("service_level_known", FAIL, InSet, {"column": "service_level", "value_set": SERVICE_LEVELS}),
        Rule("base_rate_non_negative", FAIL, Between, {"column": "base_rate", "min_value": 0}),
    ),
    "shipping_zones": (
        Rule("prefix_three_digits", FAIL, Regex, {"column": "postal_prefix", "regex": r"^\d{3}$"}),
        Rule("zone_valid", FAIL, Between, {"column": "zone", **ZONES}),
    ),
    "customers": (
        Rule("postal_code_zip5", WARN, Regex, {"column": "postal_code", "regex": r"^\d{5}$"}),
        Rule("zone_known", WARN, NotNull, {"column": "delivery_zone"}),
        Rule("city_present", WARN, NotNull, {"column": "city"}),
        Rule("region_present", WARN, NotNull, {"column": "region"}),
        Rule("segment_present", WARN, NotNull, {"column": "segment"}),
        Rule("segment_known", WARN, InSet, {"column": "segment", "value_set": SEGMENTS}),
    ),
    "transactions": (
        Rule("event_time_parsed", FAIL, NotNull, {"column": "event_time"}),
        _sku_recognised(),
        _known_currency(),
        Rule("quantity_positive", DROP, Between, {"column": "quantity", "min_value": 1}),
        Rule("unit_price_present", DROP, NotNull, {"column": "unit_price_paid"}),
        Rule("unit_price_non_negative", DROP, Between, {"column": "unit_price_paid", "min_value": 0}),
        Rule("postal_code_present", WARN, NotNull, {"column": "postal_code"}),
        Rule("zone_known", WARN, NotNull, {"column": "delivery_zone"}),
        Rule("carrier_present", WARN, NotNull, {"column": "carrier"}),
        Rule("carrier_known", WARN, InSet, {"column": "carrier", "value_set": CARRIERS}),
        Rule("shipping_charged_present", WARN, NotNull, {"column": "shipping_charged"}),
    ),
    "clickstream": (
        Rule("event_time_parsed", FAIL, NotNull, {"column": "event_time"}),
        _sku_recognised(),
        Rule("price_shown_present", DROP, NotNull, {"column": "price_shown_usd"}),
        Rule("price_shown_non_negative", DROP, Between, {"column": "price_shown_usd", "min_value": 0}),
        Rule("event_type_known", WARN, InSet, {"column": "event_type", "value_set": EVENT_TYPES}),
        Rule("device_present", WARN, NotNull, {"column": "device"}),
        Rule("referrer_present", WARN, NotNull, {"column": "referrer"}),
    ),
    "decisions": (
        Rule("event_time_parsed", FAIL, NotNull, {"column": "event_time"}),
        Rule("latency_non_negative", DROP, Between, {"column": "latency_ms", "min_value": 0}),
        Rule("price_non_negative", DROP, Between, {"column": "price_usd", "min_value": 0}),
        Rule("estimate_non_negative", DROP, Between, {"column": "estimate_usd", "min_value": 0}),
        Rule("endpoint_known", WARN, InSet, {"column": "endpoint", "value_set": ENDPOINTS}),
        Rule("strategy_known", WARN, InSet, {"column": "strategy", "value_set": STRATEGIES}),
        Rule("fallback_present", WARN, NotNull, {"column": "fallback"}),
    ),
}


# Gold: the silver -> gold checks (spark_jobs.gold), one suite per gold table. Keys and arithmetic that
# cannot go wrong unless a feature function broke are `fail`; rows a model cannot learn from (no
# category, no cost, no parcel, no rate card, no invoice) are `drop`; odd but possible values `warn`.
CompoundUnique = gxe.ExpectCompoundColumnsToBeUnique
Unique = gxe.ExpectColumnValuesToBeUnique
AGreaterThanB = gxe.ExpectColumnPairValuesAToBeGreaterThanB


def _rate(column: str) -> Rule:
    return Rule(f"{column}_in_0_1", WARN, Between, {"column": column, "min_value": 0, "max_value": 1})


GOLD_SUITES: dict[str, tuple[Rule, ...]] = {
    "pricing_daily": (
        Rule("sku_present", FAIL, NotNull, {"column": "sku"}),
        Rule("key_unique", FAIL, CompoundUnique, {"column_list": ["sku", "date"]}),
        Rule("units_non_negative", FAIL, Between, {"column": "units", "min_value": 0}),
        # Events of a SKU silver.products does not know (or before its launch) have no category.
        Rule("category_present", DROP, NotNull, {"column": "category"}),
        Rule("avg_price_positive", WARN, Between, {"column": "avg_price_usd", "min_value": 0, "strict_min": True}),
        Rule("unit_cost_present", WARN, NotNull, {"column": "unit_cost_usd"}),
    ),
    "pricing_features": (
        Rule("feature_time_present", FAIL, NotNull, {"column": "feature_time"}),
        Rule("key_unique", FAIL, CompoundUnique, {"column_list": ["sku", "as_of_date"]}),
        Rule("margin_at_most_100", FAIL, Between, {"column": "margin_pct", "max_value": 100}),
        Rule("anchor_score_non_negative", FAIL, Between, {"column": "anchor_score", "min_value": 0}),
        # Without a supplier cost there is no margin to optimise.
        Rule("unit_cost_present", DROP, NotNull, {"column": "unit_cost_usd"}),
        *(_rate(f"{level}_conversion_{n}d") for level in ("sku", "category") for n in (7, 28, 90)),
        Rule("last_price_present", WARN, NotNull, {"column": "last_price_usd"}),
        Rule("competitor_price_index_positive", WARN, Between,
             {"column": "competitor_price_index", "min_value": 0, "strict_min": True}),
    ),
    "shipping_features": (
        Rule("order_id_unique", FAIL, Unique, {"column": "order_id"}),
        Rule("billable_at_least_actual", FAIL, AGreaterThanB,
             {"column_A": "billable_weight_kg", "column_B": "actual_weight_kg", "or_equal": True,
              "ignore_row_if": "either_value_is_missing"}),
        Rule("rate_card_cost_positive", FAIL, Between,
             {"column": "rate_card_cost_usd", "min_value": 0, "strict_min": True}),
        Rule("zone_known", DROP, NotNull, {"column": "delivery_zone"}),
        Rule("carrier_known", DROP, NotNull, {"column": "carrier"}),
        # Null when a line's product has no measures or lines of the order are missing (features.shipping).
        Rule("parcel_measured", DROP, NotNull, {"column": "actual_weight_kg"}),
        Rule("rate_card_found", DROP, NotNull, {"column": "rate_card_cost_usd"}),
        Rule("invoice_present", DROP, NotNull, {"column": "actual_shipping_cost_usd"}),
        Rule("invoice_non_negative", DROP, Between, {"column": "actual_shipping_cost_usd", "min_value": 0}),
        Rule("shipping_charged_present", WARN, NotNull, {"column": "shipping_charged_usd"}),
    ),
}
