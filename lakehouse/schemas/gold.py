"""Gold schemas: the tables the pricing and shipping models train on and the API serves from, declared once.

Names and types are a contract with training and serving (docs/features.md defines every column).
Money is USD, weights kg, volumes cm3, times UTC.
"""

from __future__ import annotations

from pyspark.sql.types import (
    BooleanType,
    DataType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)


def _schema(*fields: tuple[str, DataType]) -> StructType:
    return StructType([StructField(name, dtype, nullable=True) for name, dtype in fields])


# One row per SKU and UTC date on which it was active: what happened that day (the demand labels).
PRICING_DAILY = _schema(
    ("sku", StringType()),
    ("category", StringType()),
    ("date", DateType()),
    ("views", LongType()),
    ("add_to_carts", LongType()),
    ("purchases", LongType()),
    ("units", LongType()),
    ("revenue_usd", DoubleType()),
    ("avg_price_usd", DoubleType()),
    ("competitor_min_price_usd", DoubleType()),
    ("unit_cost_usd", DoubleType()),
    ("map_price_usd", DoubleType()),
)

# Conversion windows of the pricing features, in days before as_of_date.
CONVERSION_WINDOWS = (7, 28, 90)

# One row per SKU and as_of_date: what was known at as_of_date 00:00 UTC, from data strictly before it.
PRICING_FEATURES = _schema(
    ("sku", StringType()),
    ("category", StringType()),
    ("as_of_date", DateType()),
    ("feature_time", TimestampType()),
    *((f"sku_conversion_{n}d", DoubleType()) for n in CONVERSION_WINDOWS),
    *((f"category_conversion_{n}d", DoubleType()) for n in CONVERSION_WINDOWS),
    ("sku_views_7d", LongType()),
    ("sku_views_28d", LongType()),
    ("sku_units_7d", LongType()),
    ("sku_units_28d", LongType()),
    ("anchor_score", DoubleType()),
    ("typical_price_usd", DoubleType()),
    ("last_price_usd", DoubleType()),
    ("competitor_min_price_usd", DoubleType()),
    ("competitor_price_index", DoubleType()),
    ("unit_cost_usd", DoubleType()),
    ("margin_pct", DoubleType()),
    ("map_price_usd", DoubleType()),
    ("days_since_launch", IntegerType()),
    ("day_of_week", IntegerType()),
    ("day_of_year", IntegerType()),
    ("is_weekend", BooleanType()),
    ("category_views_7d_vs_28d", DoubleType()),
)

# One row per SKU and hour of the week (ISO day 1-7, UTC hour): the views and add-to-carts expected in it.
DEMAND_PROFILE = _schema(
    ("sku", StringType()),
    ("category", StringType()),
    ("as_of_date", DateType()),
    ("day_of_week", IntegerType()),
    ("hour_of_day", IntegerType()),
    ("expected_views_per_hour", DoubleType()),
    ("expected_add_to_carts_per_hour", DoubleType()),
)

# One row per order (shipment): the parcel, the carrier's rate-card price and its invoice (the label).
SHIPPING_FEATURES = _schema(
    ("order_id", StringType()),
    ("order_time", TimestampType()),
    ("order_date", DateType()),
    ("delivery_zone", IntegerType()),
    ("is_remote", BooleanType()),
    ("carrier", StringType()),
    ("service_level", StringType()),
    ("items", LongType()),
    ("subtotal_usd", DoubleType()),
    ("actual_weight_kg", DoubleType()),
    ("volume_cm3", DoubleType()),
    ("volumetric_divisor", IntegerType()),
    ("volumetric_weight_kg", DoubleType()),
    ("billable_weight_kg", DoubleType()),
    ("weight_break_kg", DoubleType()),
    ("rate_card_cost_usd", DoubleType()),
    ("shipping_charged_usd", DoubleType()),
    ("actual_shipping_cost_usd", DoubleType()),
)

GOLD_SCHEMAS: dict[str, StructType] = {
    "pricing_daily": PRICING_DAILY,
    "pricing_features": PRICING_FEATURES,
    "demand_profile": DEMAND_PROFILE,
    "shipping_features": SHIPPING_FEATURES,
}

GOLD_KEYS: dict[str, tuple[str, ...]] = {
    "pricing_daily": ("sku", "date"),
    "pricing_features": ("sku", "as_of_date"),
    "demand_profile": ("sku", "day_of_week", "hour_of_day"),
    "shipping_features": ("order_id",),
}
