"""Schemas of the batch-scored gold tables that an e-commerce platform reads directly."""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DateType,
    DoubleType,
    IntegerType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

# One row per SKU and valid_from date: the price to charge from that day on and how it was decided.
PRICES = StructType([
    StructField("sku", StringType(), False),
    StructField("category", StringType(), True),
    StructField("valid_from", DateType(), False),
    StructField("price_usd", DoubleType(), False),
    StructField("strategy", StringType(), False),  # optimizer, or rule_based when no model is available
    StructField("candidate_price_usd", DoubleType(), False),  # the strategy's price before the guardrails
    StructField("guardrails", ArrayType(StringType(), False), False),  # reason codes of pricing.guardrails
    StructField("rule_based_price_usd", DoubleType(), False),  # the control arm's price, for comparison
    StructField("current_price_usd", DoubleType(), True),
    StructField("unit_cost_usd", DoubleType(), False),
    StructField("competitor_min_price_usd", DoubleType(), True),
    StructField("expected_units", DoubleType(), True),  # per day at price_usd
    StructField("expected_profit_usd", DoubleType(), True),  # per day at price_usd
    StructField("model_name", StringType(), True),
    StructField("model_version", StringType(), True),
    StructField("scored_at", TimestampType(), False),
])

# One row per delivery zone, weight band, service level and carrier: the expected invoice of a parcel at
# the band's upper weight, next to the carrier's published price.
SHIPPING_RATE_CARDS = StructType([
    StructField("delivery_zone", IntegerType(), False),
    StructField("weight_band_kg", DoubleType(), False),  # parcels of billable weight up to this many kg
    StructField("service_level", StringType(), False),
    StructField("carrier", StringType(), False),
    StructField("expected_cost_usd", DoubleType(), False),
    StructField("rate_card_cost_usd", DoubleType(), False),
    StructField("is_cheapest", BooleanType(), False),
    StructField("valid_from", DateType(), False),
    StructField("model_name", StringType(), False),
    StructField("model_version", StringType(), False),
    StructField("scored_at", TimestampType(), False),
])
