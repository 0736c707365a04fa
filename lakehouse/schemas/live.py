"""Schemas of the online tables the streaming features keep (`streaming.features`) and the API reads."""

from __future__ import annotations

from pyspark.sql.types import DoubleType, IntegerType, LongType, StringType, StructField, StructType, TimestampType

# gold.live_activity: one row per SKU and sliding window (length in minutes, end) with an event.
LIVE_ACTIVITY = StructType([
    StructField("sku", StringType()),
    StructField("window_minutes", IntegerType(), False),
    StructField("window_start", TimestampType()),
    StructField("window_end", TimestampType()),
    StructField("views", LongType(), False),
    StructField("add_to_carts", LongType(), False),
    StructField("purchases", LongType(), False),
    StructField("demand_index", DoubleType()),
    StructField("add_to_cart_index", DoubleType()),
])

# gold.live_competitor_prices: one row per SKU and competitor, its latest observation.
LIVE_COMPETITOR_PRICES = StructType([
    StructField("sku", StringType()),
    StructField("competitor", StringType()),
    StructField("price_usd", DoubleType()),
    StructField("observed_at", TimestampType()),
])
