"""Silver schemas: one conformed, de-duplicated table per source, declared once.

Conventions (the standardization rules of `transforms.standardize`, documented in docs/quality.md):
- `sku` is canonical `SKU-000123`; postal codes are 5-digit ZIPs with their `delivery_zone`.
- Weights are kilograms (`*_kg`), dimensions centimetres (`*_cm`).
- Money keeps the amount as sent with its `currency`, plus `<amount>_usd` at the fx rate of the row's
  date (the latest rate on or before it).
- Event times are UTC `TimestampType`; the event's UTC calendar date is a column of its own.
- Every table ends with the lineage of the bronze row that won de-duplication (`LINEAGE`).
"""

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

from lakehouse.schemas.decisions import DECISION_FIELDS

# The bronze row each silver row comes from: unexpected fields as sent, file, ingestion run and date.
LINEAGE = (
    ("_rescued_data", StringType()),
    ("_source_file", StringType()),
    ("_batch_id", StringType()),
    ("_ingested_at", TimestampType()),
    ("ingest_date", DateType()),
)


def _schema(*fields: tuple[str, object]) -> StructType:
    return StructType([StructField(name, dtype, nullable=True) for name, dtype in (*fields, *LINEAGE)])


PRODUCTS = _schema(
    ("sku", StringType()),
    ("product_name", StringType()),
    ("category", StringType()),
    ("brand", StringType()),
    ("weight_kg", DoubleType()),
    ("length_cm", DoubleType()),
    ("width_cm", DoubleType()),
    ("height_cm", DoubleType()),
    ("currency", StringType()),
    ("list_price", DoubleType()),
    ("list_price_usd", DoubleType()),  # at the fx rate of the ingest date (the day the price was sent)
    ("map_price", DoubleType()),
    ("map_price_usd", DoubleType()),
    ("launch_date", DateType()),
)

SUPPLIERS = _schema(
    ("supplier_id", StringType()),
    ("supplier_name", StringType()),
    ("sku", StringType()),
    ("currency", StringType()),
    ("unit_cost", DoubleType()),
    ("unit_cost_usd", DoubleType()),  # at the fx rate of valid_from
    ("lead_time_days", IntegerType()),
    ("valid_from", DateType()),
)

MARKET_PRICES = _schema(
    ("sku", StringType()),
    ("competitor", StringType()),
    ("currency", StringType()),
    ("price", DoubleType()),
    ("price_usd", DoubleType()),  # at the fx rate of observed_date
    ("observed_at", TimestampType()),
    ("observed_date", DateType()),
)

FX_RATES = _schema(
    ("rate_date", DateType()),
    ("currency", StringType()),
    ("rate_to_usd", DoubleType()),
)

SHIPPING_RATES = _schema(
    ("carrier", StringType()),
    ("service_level", StringType()),
    ("zone", IntegerType()),
    ("weight_break_kg", DoubleType()),
    ("currency", StringType()),
    ("base_rate", DoubleType()),
    ("base_rate_usd", DoubleType()),  # at the fx rate of effective_from
    ("per_kg_over", DoubleType()),
    ("per_kg_over_usd", DoubleType()),
    ("remote_surcharge", DoubleType()),
    ("remote_surcharge_usd", DoubleType()),
    ("volumetric_divisor", IntegerType()),
    ("fuel_surcharge_pct", DoubleType()),
    ("effective_from", DateType()),
)

SHIPPING_ZONES = _schema(
    ("postal_prefix", StringType()),  # first 3 digits of the ZIP, zero-padded
    ("zone", IntegerType()),
    ("is_remote", BooleanType()),
)

CUSTOMERS = _schema(
    ("customer_id", StringType()),
    ("postal_code", StringType()),
    ("delivery_zone", IntegerType()),
    ("is_remote", BooleanType()),
    ("city", StringType()),
    ("region", StringType()),
    ("segment", StringType()),
    ("signup_date", DateType()),
)

TRANSACTIONS = _schema(
    ("event_id", StringType()),
    ("order_id", StringType()),
    ("line_number", IntegerType()),
    ("customer_id", StringType()),
    ("session_id", StringType()),
    ("sku", StringType()),
    ("quantity", IntegerType()),
    ("currency", StringType()),
    ("unit_price_paid", DoubleType()),
    ("unit_price_paid_usd", DoubleType()),  # at the fx rate of transaction_date
    ("shipping_charged", DoubleType()),
    ("shipping_charged_usd", DoubleType()),
    ("actual_shipping_cost_usd", DoubleType()),  # the carrier's invoice is always in USD
    ("event_time", TimestampType()),
    ("transaction_date", DateType()),
    ("postal_code", StringType()),
    ("delivery_zone", IntegerType()),
    ("is_remote", BooleanType()),
    ("carrier", StringType()),
    ("service_level", StringType()),
)

CLICKSTREAM = _schema(
    ("event_id", StringType()),
    ("session_id", StringType()),
    ("customer_id", StringType()),
    ("sku", StringType()),
    ("event_type", StringType()),
    ("price_shown_usd", DoubleType()),  # sent in USD
    ("event_time", TimestampType()),
    ("event_date", DateType()),
    ("device", StringType()),
    ("referrer", StringType()),
    ("page", StringType()),
    ("order_id", StringType()),
    ("decision_id", StringType()),  # the API's price decision shown (null for the history backfill)
)

_TYPED = {"string": StringType(), "double": DoubleType(), "boolean": BooleanType(),
          "array<string>": ArrayType(StringType())}


def _decision_fields():
    """The decision record typed: event_time a UTC timestamp followed by its date (the partition)."""
    for name, kind in DECISION_FIELDS.items():
        if name == "event_time":
            yield name, TimestampType()
            yield "event_date", DateType()
        else:
            yield name, _TYPED[kind]


DECISIONS = _schema(*_decision_fields())
