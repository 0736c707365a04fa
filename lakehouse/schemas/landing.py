"""Landing-zone schemas: the columns and types each source sends, declared once.

Batch ingestion reads every landing file with exactly these schemas (nothing is inferred) and the
simulator derives its writers' column lists and types from them. Grain: one schema per source; files
live at `<landing>/<source>/ingest_date=YYYY-MM-DD/part-00000.<format>` (formats in `lakehouse.sources`).

Conventions:
- Identifiers arrive as sent: `sku` in several spellings (canonical `SKU-000123`), postal codes in
  several shapes (`02139`, `2139`, ` 02139-1234`). They are strings here; silver standardises them.
- Event times carry mixed UTC offsets (`+00:00`, `-05:00`, ...), so they are `StringType`; silver
  parses them to UTC. Plain calendar dates (`YYYY-MM-DD`) are `DateType`; Parquet timestamps are
  true instants (`TimestampType`, UTC).
- Money is `DoubleType` in the currency named by the row's `currency` column.
- Columns that appear mid-history (a source's `late_columns` in `lakehouse.sources`) are deliberately
  NOT declared: ingestion must rescue them as unexpected fields.
"""

from __future__ import annotations

from pyspark.sql.types import (
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


def _schema(*fields: tuple[str, object]) -> StructType:
    # Every landing column is nullable: a source may send nulls anywhere, quality gates decide later.
    return StructType([StructField(name, dtype, nullable=True) for name, dtype in fields])


# Product catalogue (CSV): full snapshot on the first day, then new launches and changed rows daily.
PRODUCTS = _schema(
    ("sku", StringType()),
    ("product_name", StringType()),
    ("category", StringType()),
    ("brand", StringType()),
    ("weight", DoubleType()),
    ("weight_unit", StringType()),  # g | kg | lb
    ("length", DoubleType()),
    ("width", DoubleType()),
    ("height", DoubleType()),
    ("dim_unit", StringType()),  # cm | in
    ("list_price", DoubleType()),
    ("currency", StringType()),
    ("launch_date", DateType()),
    ("map_price", DoubleType()),  # minimum advertised price; null for most SKUs
)

# Supplier cost list (JSON lines): one row per supplier and SKU each time the cost changes.
SUPPLIERS = _schema(
    ("supplier_id", StringType()),
    ("supplier_name", StringType()),
    ("sku", StringType()),
    ("unit_cost", DoubleType()),
    ("currency", StringType()),
    ("lead_time_days", IntegerType()),
    ("valid_from", DateType()),
)

# Competitor price observations (Parquet): one row per competitor, SKU and day it covers.
MARKET_PRICES = _schema(
    ("sku", StringType()),
    ("competitor", StringType()),
    ("price", DoubleType()),
    ("currency", StringType()),
    ("observed_at", TimestampType()),
)

# Daily exchange rates (CSV): one row per currency and day; rate_to_usd * amount = USD amount.
FX_RATES = _schema(
    ("rate_date", DateType()),
    ("currency", StringType()),
    ("rate_to_usd", DoubleType()),
)

# Carrier rate card (CSV, long format): one row per carrier, service level, zone and weight break.
# Price for a billable weight w: base_rate of the smallest break >= w, or of the last break plus
# per_kg_over * (w - last break); then * (1 + fuel_surcharge_pct / 100), plus remote_surcharge
# for remote destinations. Billable weight = max(actual kg, L*W*H cm3 / volumetric_divisor).
SHIPPING_RATES = _schema(
    ("carrier", StringType()),
    ("service_level", StringType()),  # standard | express
    ("zone", IntegerType()),
    ("weight_break_kg", DoubleType()),
    ("base_rate", DoubleType()),
    ("per_kg_over", DoubleType()),
    ("volumetric_divisor", IntegerType()),
    ("fuel_surcharge_pct", DoubleType()),
    ("remote_surcharge", DoubleType()),
    ("currency", StringType()),
    ("effective_from", DateType()),
)

# Zone chart (CSV): destination postal prefix (first 3 digits, zero-padded) to zone 1..8.
SHIPPING_ZONES = _schema(
    ("postal_prefix", StringType()),
    ("zone", IntegerType()),
    ("is_remote", BooleanType()),
)

# Customer register (CSV): snapshot on the first day, then the day's sign-ups.
CUSTOMERS = _schema(
    ("customer_id", StringType()),
    ("postal_code", StringType()),
    ("city", StringType()),
    ("region", StringType()),
    ("segment", StringType()),  # new | returning | loyal
    ("signup_date", DateType()),
)

# Order lines (JSON lines): one row per order line. Order-level values (postal_code, carrier,
# service_level, shipping_charged, actual_shipping_cost) repeat on every line of the order.
# actual_shipping_cost is the carrier's invoice, always in USD; the other money is in `currency`.
TRANSACTIONS = _schema(
    ("event_id", StringType()),
    ("order_id", StringType()),
    ("line_number", IntegerType()),
    ("customer_id", StringType()),
    ("sku", StringType()),
    ("quantity", IntegerType()),
    ("unit_price_paid", DoubleType()),
    ("currency", StringType()),
    ("event_time", StringType()),  # ISO-8601 with mixed UTC offsets
    ("postal_code", StringType()),
    ("carrier", StringType()),
    ("service_level", StringType()),
    ("shipping_charged", DoubleType()),
    ("actual_shipping_cost", DoubleType()),
    ("session_id", StringType()),
)

# Behaviour events (JSON lines): one row per event. customer_id is null while the shopper is
# anonymous; order_id is set on the checkout and purchase events of a session that paid; decision_id
# names the API's price decision the shopper saw (live shoppers; null in the history backfill).
CLICKSTREAM = _schema(
    ("event_id", StringType()),
    ("session_id", StringType()),
    ("customer_id", StringType()),
    ("sku", StringType()),
    ("event_type", StringType()),  # view | add_to_cart | remove_from_cart | checkout | purchase | abandon
    ("price_shown", DoubleType()),  # USD
    ("event_time", StringType()),  # ISO-8601 with mixed UTC offsets
    ("device", StringType()),
    ("referrer", StringType()),
    ("page", StringType()),
    ("order_id", StringType()),
    ("decision_id", StringType()),
)

# The API's decision log arrives only through Kafka (no landing file). A field's type is as the JSON
# message carries it: `guardrails` stays the JSON array's text, which silver parses (like event times).
_AS_SENT = {"string": StringType(), "double": DoubleType(), "boolean": BooleanType(), "array<string>": StringType()}
DECISIONS = _schema(*((name, _AS_SENT[kind]) for name, kind in DECISION_FIELDS.items()))
