"""The sources, declared once each: format and schema as sent, natural key, late columns, partitioning,
quality suite, stream topic and description.

Everything keyed by a source derives from `SOURCES`: the table registry (`lakehouse.tables`), the schema
maps below, the quality gate's suites, the streamed sources (`streaming.topics`) and the simulator's
writers. A source's standardizer (bronze -> silver columns) is its one transform, in `transforms.standardize`.
Adding a source is one `Source` here, its schemas in `lakehouse/schemas/`, its standardizer and tests.

The suites were chosen from the sources' known defects (docs/simulator.md): out-of-range values and
nulls in columns the downstream features cannot do without are `drop`; nulls in descriptive columns and
unknown categories or zones are `warn`; anything that means the standardization itself broke
(unparseable time, unrecognisable SKU, unknown currency, impossible reference data) is `fail`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pyspark.sql.types import StructType

from lakehouse import reference
from lakehouse.quality import BETWEEN, IN_SET, MATCHES, NOT_NULL, Rule, Severity
from lakehouse.schemas import landing, silver

WARN, DROP, FAIL = Severity.WARN, Severity.DROP, Severity.FAIL

# The seed design partitions bronze by ingestion date as year/month/day.
INGEST_DATE_PARTITIONS = ("ingest_year", "ingest_month", "ingest_day")


@dataclass(frozen=True)
class Source:
    """One source of the lakehouse.

    - `landing`: the schema as sent (landing files and Kafka messages alike); `landing_format` the landing
      files' format, None for a source that only streams.
    - `key`: the natural key; a landing record without it is quarantined, silver keeps one row per key.
    - `late_columns`: columns the source starts sending mid-history, deliberately not in `landing`, so that
      ingestion rescues them (`_rescued_data`) and silver reports them as schema drift.
    - `silver`: the standardized schema; `silver_partition_by` and `silver_stats_columns` (the columns
      Delta keeps file statistics on; empty: Delta's default) shape its table.
    - `suite`: the quality rules of the bronze -> silver promotion, on the standardized columns.
    - `message_key`: set for a source that also arrives through Kafka (`<prefix>.<name>`): the column whose
      value keys each message, so that one key's events stay in one partition, in order.
    - `message_rules`: what a streamed message must also satisfy, beyond its schema and key, to land in
      bronze; one that fails goes to `bronze.dead_letter` naming the rules. `message_time` names a column
      that may not be later than the message's Kafka timestamp (plus a clock skew), and
      `message_sku_known` asks for a SKU of the catalogue (silver.products).
    """

    name: str
    description: str
    landing: StructType
    landing_format: Literal["csv", "json", "parquet"] | None
    key: tuple[str, ...]
    silver: StructType
    suite: tuple[Rule, ...]
    late_columns: tuple[str, ...] = ()
    bronze_partition_by: tuple[str, ...] = INGEST_DATE_PARTITIONS
    silver_partition_by: tuple[str, ...] = ()
    silver_stats_columns: tuple[str, ...] = ()
    message_key: str | None = None
    message_rules: tuple[Rule, ...] = ()
    message_time: str | None = None
    message_sku_known: bool = False


def _sku_recognised() -> Rule:
    # canonical_sku() returns null for a spelling it does not know: a new format, so stop and look.
    return Rule("sku_recognised", FAIL, NOT_NULL, {"column": "sku"})


def _known_currency() -> Rule:
    return Rule("currency_known", FAIL, IN_SET, {"column": "currency", "value_set": list(reference.CURRENCIES)})


def _zone_valid() -> Rule:
    return Rule("zone_valid", FAIL, BETWEEN, {"column": "zone", "min_value": 1, "max_value": reference.ZONE_COUNT})


def _event_time_parsed() -> Rule:
    return Rule("event_time_parsed", FAIL, NOT_NULL, {"column": "event_time"})


# In promotion order: fx rates and the zone chart first, because the others are converted and zoned with them.
SOURCES: dict[str, Source] = {s.name: s for s in (
    Source(
        "fx_rates", "Daily currency to USD rates.",
        landing.FX_RATES, "csv", ("rate_date", "currency"), silver.FX_RATES,
        (Rule("currency_code", FAIL, MATCHES, {"column": "currency", "regex": r"^[A-Z]{3}$"}),
         Rule("rate_positive", FAIL, BETWEEN, {"column": "rate_to_usd", "min_value": 0, "strict_min": True}),
         Rule("rate_present", FAIL, NOT_NULL, {"column": "rate_to_usd"}))),
    Source(
        "shipping_zones", "Zone chart: destination postal prefix to zone.",
        landing.SHIPPING_ZONES, "csv", ("postal_prefix",), silver.SHIPPING_ZONES,
        (Rule("prefix_three_digits", FAIL, MATCHES, {"column": "postal_prefix", "regex": r"^\d{3}$"}),
         _zone_valid())),
    Source(
        "shipping_rates", "Carrier rate cards by service level, zone and weight break, with effective dates.",
        landing.SHIPPING_RATES, "csv", ("carrier", "service_level", "zone", "weight_break_kg", "effective_from"),
        silver.SHIPPING_RATES,
        (_known_currency(),
         _zone_valid(),
         Rule("service_level_known", FAIL, IN_SET,
              {"column": "service_level", "value_set": list(reference.SERVICE_LEVELS)}),
         Rule("base_rate_non_negative", FAIL, BETWEEN, {"column": "base_rate", "min_value": 0}))),
    Source(
        "products", "Product catalogue as sent: SKUs in several spellings, units as sent.",
        landing.PRODUCTS, "csv", ("sku",), silver.PRODUCTS,
        (_sku_recognised(),
         _known_currency(),
         Rule("weight_present", DROP, NOT_NULL, {"column": "weight_kg"}),
         Rule("weight_positive", DROP, BETWEEN, {"column": "weight_kg", "min_value": 0, "strict_min": True}),
         Rule("length_present", DROP, NOT_NULL, {"column": "length_cm"}),
         Rule("list_price_present", DROP, NOT_NULL, {"column": "list_price"}),
         Rule("list_price_non_negative", DROP, BETWEEN, {"column": "list_price", "min_value": 0}),
         Rule("product_name_present", WARN, NOT_NULL, {"column": "product_name"}),
         Rule("brand_present", WARN, NOT_NULL, {"column": "brand"}),
         Rule("category_known", WARN, IN_SET, {"column": "category", "value_set": list(reference.CATEGORIES)})),
        late_columns=("color",), silver_partition_by=("category",)),
    Source(
        "suppliers", "Supplier unit costs per SKU with their validity dates.",
        landing.SUPPLIERS, "json", ("supplier_id", "sku", "valid_from"), silver.SUPPLIERS,
        (_sku_recognised(),
         _known_currency(),
         Rule("unit_cost_non_negative", DROP, BETWEEN, {"column": "unit_cost", "min_value": 0}),
         Rule("supplier_name_present", WARN, NOT_NULL, {"column": "supplier_name"}),
         Rule("lead_time_present", WARN, NOT_NULL, {"column": "lead_time_days"}))),
    Source(
        "market_prices", "Competitor price observations per SKU and day.",
        landing.MARKET_PRICES, "parquet", ("sku", "competitor", "observed_at"), silver.MARKET_PRICES,
        (_sku_recognised(),
         _known_currency(),
         Rule("price_present", DROP, NOT_NULL, {"column": "price"}),
         Rule("price_non_negative", DROP, BETWEEN, {"column": "price", "min_value": 0})),
        silver_partition_by=("observed_date",), message_key="sku",
        # A streamed observation moves live prices at once: implausible ones stop at the door.
        message_rules=(
            Rule("price_present", DROP, NOT_NULL, {"column": "price"}),
            Rule("price_positive", DROP, BETWEEN, {"column": "price", "min_value": 0, "strict_min": True}),
            Rule("price_plausible", DROP, BETWEEN, {"column": "price", "max_value": reference.MAX_PRICE}),
            Rule("currency_present", DROP, NOT_NULL, {"column": "currency"}),
            Rule("currency_known", DROP, IN_SET, {"column": "currency", "value_set": list(reference.CURRENCIES)})),
        message_time="observed_at", message_sku_known=True),
    Source(
        "customers", "Customer register with postal codes as sent.",
        landing.CUSTOMERS, "csv", ("customer_id",), silver.CUSTOMERS,
        (Rule("postal_code_zip5", WARN, MATCHES, {"column": "postal_code", "regex": r"^\d{5}$"}),
         Rule("zone_known", WARN, NOT_NULL, {"column": "delivery_zone"}),
         Rule("city_present", WARN, NOT_NULL, {"column": "city"}),
         Rule("region_present", WARN, NOT_NULL, {"column": "region"}),
         Rule("segment_present", WARN, NOT_NULL, {"column": "segment"}),
         Rule("segment_known", WARN, IN_SET, {"column": "segment", "value_set": list(reference.SEGMENTS)}))),
    Source(
        "transactions", "Order lines (history backfill and, later, the Kafka stream).",
        landing.TRANSACTIONS, "json", ("event_id",), silver.TRANSACTIONS,
        (_event_time_parsed(),
         _sku_recognised(),
         _known_currency(),
         Rule("quantity_positive", DROP, BETWEEN, {"column": "quantity", "min_value": 1}),
         Rule("unit_price_present", DROP, NOT_NULL, {"column": "unit_price_paid"}),
         Rule("unit_price_non_negative", DROP, BETWEEN, {"column": "unit_price_paid", "min_value": 0}),
         Rule("postal_code_present", WARN, NOT_NULL, {"column": "postal_code"}),
         Rule("zone_known", WARN, NOT_NULL, {"column": "delivery_zone"}),
         Rule("carrier_present", WARN, NOT_NULL, {"column": "carrier"}),
         Rule("carrier_known", WARN, IN_SET, {"column": "carrier", "value_set": list(reference.CARRIERS)}),
         Rule("shipping_charged_present", WARN, NOT_NULL, {"column": "shipping_charged"})),
        late_columns=("coupon_code",), silver_partition_by=("delivery_zone", "transaction_date"),
        # Statistics cost about a third of writing the big event tables; only the columns readers filter on
        # (time, product, the experiment readout's decision ids) earn them. A random event id gains nothing.
        silver_stats_columns=("event_time", "sku"), message_key="order_id"),
    Source(
        "clickstream", "Behaviour events (history backfill and, later, the Kafka stream).",
        landing.CLICKSTREAM, "json", ("event_id",), silver.CLICKSTREAM,
        (_event_time_parsed(),
         _sku_recognised(),
         Rule("price_shown_present", DROP, NOT_NULL, {"column": "price_shown_usd"}),
         Rule("price_shown_non_negative", DROP, BETWEEN, {"column": "price_shown_usd", "min_value": 0}),
         Rule("event_type_known", WARN, IN_SET, {"column": "event_type", "value_set": list(reference.EVENT_TYPES)}),
         Rule("device_present", WARN, NOT_NULL, {"column": "device"}),
         Rule("referrer_present", WARN, NOT_NULL, {"column": "referrer"})),
        silver_partition_by=("event_date",), silver_stats_columns=("event_time", "sku", "decision_id"),
        message_key="session_id"),
    Source(
        "decisions", "The API's decision log (serving.decision_log): inputs, answer, experiment variant, model "
                     "version, guardrails, fallback and latency.",
        landing.DECISIONS, None, ("decision_id",), silver.DECISIONS,
        (_event_time_parsed(),
         Rule("latency_non_negative", DROP, BETWEEN, {"column": "latency_ms", "min_value": 0}),
         Rule("price_non_negative", DROP, BETWEEN, {"column": "price_usd", "min_value": 0}),
         Rule("estimate_non_negative", DROP, BETWEEN, {"column": "estimate_usd", "min_value": 0}),
         Rule("charge_non_negative", DROP, BETWEEN, {"column": "charge_usd", "min_value": 0}),
         Rule("endpoint_known", WARN, IN_SET, {"column": "endpoint", "value_set": list(reference.ENDPOINTS)}),
         Rule("strategy_known", WARN, IN_SET, {"column": "strategy", "value_set": list(reference.STRATEGIES)}),
         Rule("fallback_present", WARN, NOT_NULL, {"column": "fallback"})),
        silver_partition_by=("event_date",), message_key="decision_id"),
)}

PROMOTION_ORDER: tuple[str, ...] = tuple(SOURCES)
# The sources that arrive as landing files (all but the Kafka-only decision log).
LANDING_SOURCES: dict[str, Source] = {n: s for n, s in SOURCES.items() if s.landing_format}
SUITES: dict[str, tuple[Rule, ...]] = {n: s.suite for n, s in SOURCES.items()}


def source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise KeyError(f"unknown source {name!r}; known: {', '.join(SOURCES)}") from None
