"""Pricing labels and features on hand-built silver rows, against hand-computed values."""

from datetime import date, datetime

from pyspark.sql import Row
from pyspark.testing import assertDataFrameEqual, assertSchemaEqual

from features.pricing import lowest_cost_history, pricing_daily, pricing_features, sku_day_activity
from lakehouse.schemas.gold import PRICING_DAILY, PRICING_FEATURES

JUL, AUG = 7, 8


def _d(month: int, day: int) -> date:
    return date(2026, month, day)


def _products(spark, rows):
    return spark.createDataFrame(rows, "sku string, category string, launch_date date, map_price_usd double")


def _suppliers(spark, rows):
    return spark.createDataFrame(rows, "supplier_id string, sku string, unit_cost_usd double, valid_from date")


def test_the_lowest_cost_in_force_counts_every_supplier_s_latest_cost(spark):
    suppliers = _suppliers(spark, [("A", "S1", 5.0, _d(JUL, 1)), ("B", "S1", 6.0, _d(AUG, 2)),
                                   ("A", "S1", 7.0, _d(AUG, 3)), ("A", "S2", 3.0, _d(AUG, 1))])

    # On Aug 2 supplier A still charges 5.0 (from Jul 1): B's new 6.0 does not replace it; on Aug 3
    # A goes up to 7.0 and B's 6.0 is the lowest.
    assertDataFrameEqual(lowest_cost_history(suppliers), [
        Row("S1", _d(JUL, 1), 5.0), Row("S1", _d(AUG, 2), 5.0), Row("S1", _d(AUG, 3), 6.0),
        Row("S2", _d(AUG, 1), 3.0)])


def test_pricing_daily_has_a_row_per_active_sku_and_day_with_zero_counts_and_keeps_stray_events(spark):
    products = _products(spark, [("S1", "toys", _d(JUL, 1), 9.0), ("S2", "toys", _d(AUG, 3), None)])
    clickstream = spark.createDataFrame([
        ("S1", "view", 10.0, _d(AUG, 1)), ("S1", "view", 12.0, _d(AUG, 1)), ("S1", "add_to_cart", 11.0, _d(AUG, 1)),
        ("S1", "purchase", 11.0, _d(AUG, 1)), ("S1", "remove_from_cart", 11.0, _d(AUG, 1)),
        ("S1", "view", 9.0, _d(AUG, 3)),
        ("S2", "view", 20.0, _d(AUG, 3)), ("S2", "purchase", 20.0, _d(AUG, 3)),
        ("S2", "view", 21.0, _d(AUG, 2)),  # before its launch
        ("S9", "view", 5.0, _d(AUG, 2)),  # a SKU silver.products does not know
    ], "sku string, event_type string, price_shown_usd double, event_date date")
    transactions = spark.createDataFrame([("S1", 2, 11.0, _d(AUG, 1)), ("S2", 1, 19.5, _d(AUG, 3))],
                                         "sku string, quantity int, unit_price_paid_usd double, transaction_date date")
    market = spark.createDataFrame([("S1", 10.5, _d(AUG, 1)), ("S1", 9.5, _d(AUG, 1)), ("S1", 10.0, _d(AUG, 2)),
                                    ("S1", 8.0, _d(JUL, 20))],  # a day before the first event: no row
                                   "sku string, price_usd double, observed_date date")
    suppliers = _suppliers(spark, [("A", "S1", 5.0, _d(JUL, 1)), ("B", "S1", 6.0, _d(AUG, 2)),
                                   ("A", "S1", 7.0, _d(AUG, 3))])

    daily = pricing_daily(products, sku_day_activity(clickstream, transactions), market, suppliers)

    assertSchemaEqual(daily.schema, PRICING_DAILY)
    assertDataFrameEqual(daily, [
        Row("S1", "toys", _d(AUG, 1), 2, 1, 1, 2, 22.0, 11.0, 9.5, 5.0, 9.0),
        Row("S1", "toys", _d(AUG, 2), 0, 0, 0, 0, 0.0, None, 10.0, 5.0, 9.0),
        Row("S1", "toys", _d(AUG, 3), 1, 0, 0, 0, 0.0, 9.0, None, 6.0, 9.0),
        Row("S2", "toys", _d(AUG, 3), 1, 0, 1, 1, 19.5, 20.0, None, None, None),
        Row("S2", None, _d(AUG, 2), 1, 0, 0, 0, 0.0, 21.0, None, None, None),
        Row("S9", None, _d(AUG, 2), 1, 0, 0, 0, 0.0, 5.0, None, None, None),
    ])


def _daily(spark, rows):
    return spark.createDataFrame([
        (sku, "toys", d, views, 0, purchases, units, 0.0, price, competitor, None, None)
        for sku, d, views, purchases, units, price, competitor in rows], PRICING_DAILY)


def test_pricing_features_use_only_the_days_before_as_of_date(spark):
    # S1 has days at the edges of the windows of as_of Aug 1: Jul 25 is as_of - 7 (in the 7-day window),
    # Jul 4 is as_of - 28 (in the 28-day window), Jul 1 only in the 90-day window.
    daily = _daily(spark, [
        ("S1", _d(JUL, 1), 100, 10, 12, 10.0, 9.0),
        ("S1", _d(JUL, 4), 6, 0, 0, None, None),
        ("S1", _d(JUL, 25), 10, 1, 1, 12.0, None),
        ("S1", _d(JUL, 31), 4, 2, 3, 11.0, None),
        ("S2", _d(JUL, 31), 60, 0, 0, 30.0, 25.0),
    ])
    products = _products(spark, [("S1", "toys", _d(6, 1), 15.0), ("S2", "toys", _d(JUL, 30), None)])
    costs = spark.createDataFrame([("S1", _d(JUL, 1), 5.0), ("S1", _d(JUL, 26), 9.0)],
                                  "sku string, valid_from date, unit_cost_usd double")

    features = pricing_features(daily, products, costs)

    assertSchemaEqual(features.schema, PRICING_FEATURES)
    windows = ["sku", "as_of_date", "sku_conversion_7d", "sku_conversion_28d", "sku_conversion_90d",
               "category_conversion_7d", "category_conversion_28d", "category_conversion_90d", "sku_views_7d",
               "sku_views_28d", "sku_units_7d", "sku_units_28d", "anchor_score", "category_views_7d_vs_28d"]
    # Category (both SKUs) per day: Jul 1 100 views / 10 purchases, Jul 4 6 / 0, Jul 25 10 / 1, Jul 31 64 / 2.
    # Momentum compares views per day of history: as of Aug 1 the 7 days before hold 2 days with data
    # (74 views), the 28 days before 3 (80 views).
    assertDataFrameEqual(features.select(windows), [
        Row("S1", _d(JUL, 2), 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 100, 100, 12, 12, 1.0, 1.0),
        Row("S1", _d(JUL, 5), 10 / 106, 10 / 106, 10 / 106, 10 / 106, 10 / 106, 10 / 106, 106, 106, 12, 12, 1.0, 1.0),
        Row("S1", _d(JUL, 26), 0.1, 11 / 116, 11 / 116, 0.1, 11 / 116, 11 / 116, 10, 116, 1, 13, 1.0, 10 / (116 / 3)),
        Row("S1", _d(AUG, 1), 3 / 14, 3 / 20, 13 / 120, 3 / 74, 3 / 80, 13 / 180, 14, 20, 4, 4, 20 / 80 * 2,
            (74 / 2) / (80 / 3)),
        Row("S2", _d(AUG, 1), 0.0, 0.0, 0.0, 3 / 74, 3 / 80, 13 / 180, 60, 60, 0, 0, 60 / 80 * 2, (74 / 2) / (80 / 3)),
    ])
    prices = ["sku", "as_of_date", "category", "feature_time", "typical_price_usd", "last_price_usd",
              "competitor_min_price_usd", "competitor_price_index", "unit_cost_usd", "margin_pct", "map_price_usd",
              "days_since_launch", "day_of_week", "day_of_year", "is_weekend"]
    assertDataFrameEqual(features.select(prices), [
        Row("S1", _d(JUL, 2), "toys", datetime(2026, 7, 2), 10.0, 10.0, 9.0, 10 / 9, 5.0, 50.0, 15.0, 31, 4, 183,
            False),
        Row("S1", _d(JUL, 5), "toys", datetime(2026, 7, 5), 10.0, 10.0, 9.0, 10 / 9, 5.0, 50.0, 15.0, 34, 7, 186,
            True),
        # The cost valid from Jul 26 is known on Jul 26 itself (a price list, not an event).
        Row("S1", _d(JUL, 26), "toys", datetime(2026, 7, 26), 11.0, 12.0, 9.0, 12 / 9, 9.0, 25.0, 15.0, 55, 7, 207,
            True),
        Row("S1", _d(AUG, 1), "toys", datetime(2026, 8, 1), 11.5, 11.0, 9.0, 11 / 9, 9.0, 100 * 2 / 11, 15.0, 61, 6,
            213, True),
        Row("S2", _d(AUG, 1), "toys", datetime(2026, 8, 1), 30.0, 30.0, 25.0, 1.2, None, None, None, 2, 6, 213, True),
    ])
