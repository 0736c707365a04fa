"""The table registry: every Delta table's name, layer, location, partitioning and owner, in one place.

A source's bronze, stream and silver tables derive from its declaration in `lakehouse.sources`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lakehouse.settings import Settings
from lakehouse.sources import INGEST_DATE_PARTITIONS, LANDING_SOURCES, SOURCES

Layer = Literal["bronze", "silver", "gold", "ops"]


@dataclass(frozen=True)
class Table:
    """A Delta table. `name` is `<layer>.<table>`; the location is derived from the lake root.

    `postgres_key`: set for a table synced to the operational database (`operational.sync`): its primary key
    there, in the order that serves the platform's lookups (its index). `stats_columns`: the columns Delta keeps
    file statistics on for data skipping, set when the table is
    created; empty means Delta's default (the first 32 columns). `checkpoint_interval`: commits between
    Delta log checkpoints, also set at creation; None means Delta's default (10).
    """

    name: str
    partition_by: tuple[str, ...]
    owner: str
    description: str
    stats_columns: tuple[str, ...] = ()
    checkpoint_interval: int | None = None
    postgres_key: tuple[str, ...] = ()

    @property
    def creation_options(self) -> dict[str, str]:
        """Writer options that set the table's properties when a write creates it."""
        options = {}
        if self.stats_columns:
            options["delta.dataSkippingStatsColumns"] = ",".join(self.stats_columns)
        if self.checkpoint_interval:
            options["delta.checkpointInterval"] = str(self.checkpoint_interval)
        if self.layer == "silver":
            # Gold reads what changed in silver since its last build (spark_jobs.gold) from the change feed.
            options["delta.enableChangeDataFeed"] = "true"
        return options

    @property
    def layer(self) -> Layer:
        return self.name.split(".")[0]  # type: ignore[return-value]

    def location(self, settings: Settings) -> str:
        layer, table = self.name.split(".")
        return f"{settings.lake_root}/{layer}/{table}"


# Silver promotion reads the streamed rows above its `_ingested_at` watermark; nothing else filters them.
BRONZE_STREAM_STATS_COLUMNS = ("_ingested_at",)
# The stream commits every second or so. A Delta checkpoint rebuilds the table's state and rewrites it
# (about 8 s of one batch here), and every batch after it waits: at Delta's default of one per 10
# commits that is most of the latency's p95. Readers replay at most 99 small commit files instead of 9.
BRONZE_STREAM_CHECKPOINT_INTERVAL = 100

TABLES: dict[str, Table] = {
    t.name: t
    for t in [
        *(Table(f"bronze.{s.name}", s.bronze_partition_by, "spark_jobs.ingest",
                f"{s.description} One row per landing record that parsed; unexpected fields in _rescued_data.")
          for s in LANDING_SOURCES.values()),
        Table("bronze.quarantine", ("source", *INGEST_DATE_PARTITIONS), "spark_jobs.ingest",
              "Landing records that could not be conformed, raw as received, with the reason. "
              "One row per bad record."),
        *(Table(f"bronze.{s.name}_stream", s.bronze_partition_by, "streaming.bronze",
                f"{s.name.capitalize()} from Kafka, exactly once: one row per valid message, declared columns, "
                "_rescued_data and the Kafka coordinates (_kafka_topic, _kafka_partition, _kafka_offset, "
                "_kafka_timestamp); ingestion date is the Kafka timestamp's UTC date.", BRONZE_STREAM_STATS_COLUMNS,
                BRONZE_STREAM_CHECKPOINT_INTERVAL)
          for s in SOURCES.values() if s.message_key),
        Table("bronze.dead_letter", ("source", *INGEST_DATE_PARTITIONS), "streaming.bronze",
              "Kafka messages that could not be conformed: raw payload, Kafka coordinates and the reason. "
              "One row per bad message."),
        Table("ops.ingest_log", (), "spark_jobs.ingest",
              "One row per (source, ingest date) and run that ingested it: files, rows, quarantined."),
        *(Table(f"silver.{s.name}", s.silver_partition_by, "spark_jobs.silver",
                f"{s.description} Standardized (canonical SKU, kg/cm, USD, UTC, zip5 + zone) and de-duplicated: "
                f"one row per {', '.join(s.key)}, the latest delivery; lineage of that bronze row.",
                s.silver_stats_columns)
          for s in SOURCES.values()),
        Table("silver.quarantine", ("source",), "spark_jobs.silver",
              "Rows removed by a drop rule on their way to silver: the standardized row as JSON, its key and "
              "the names of the rules it failed. One row per removed row."),
        Table("gold.pricing_daily", ("category",), "spark_jobs.gold",
              "What happened to each active SKU each UTC date: views, add-to-carts, purchases, units, revenue, "
              "mean price shown, competitor minimum, unit cost, MAP (the demand labels). One row per sku, date."),
        Table("gold.pricing_features", ("category",), "spark_jobs.gold",
              "Pricing features known at as_of_date 00:00 UTC (feature_time), from data strictly before: "
              "conversion, anchor score, prices, competitor index, cost, margin, calendar. One row per sku, "
              "as_of_date."),
        Table("gold.demand_profile", (), "spark_jobs.gold",
              "Views and add-to-carts each SKU is expected to get in each hour of the week (ISO day, UTC hour): its "
              "mean daily volume over the last 28 days spread by its category's share of that hour. One row per "
              "sku, day_of_week, hour_of_day."),
        Table("gold.shipping_features", ("delivery_zone",), "spark_jobs.gold",
              "Each shipment: parcel weight and volume, billable weight, the carrier's rate-card price on the order "
              "date (baseline) and its invoice (label). One row per order_id."),
        Table("gold.live_activity", ("window_minutes",), "streaming.features",
              "Live demand per SKU from the clickstream stream, in event time: views, add-to-carts and purchases "
              "in sliding windows of 15 and 60 minutes (sliding every minute), with the demand index against "
              "gold.demand_profile. One row per sku, window_minutes and window_end with an event; rows of windows "
              "that ended over 2 hours ago are deleted.", ("window_end", "sku")),
        Table("gold.live_competitor_prices", (), "streaming.features",
              "Each competitor's latest observed price of each SKU from the market-prices stream, in USD. One row "
              "per sku and competitor."),
        Table("gold.quarantine", ("table",), "spark_jobs.gold",
              "Rows of the latest gold build removed by a drop rule: the row as JSON, its key and the names of the "
              "rules it failed. One row per removed row."),
        Table("gold.prices", ("valid_from",), "spark_jobs.score",
              "The price of each SKU from valid_from on, decided by the champion pricing model under the "
              "guardrails (rule-based without a model): candidate, guardrails applied, the rule-based price, "
              "expected units and profit, model version. One row per sku, valid_from.",
              postgres_key=("sku", "valid_from")),
        Table("gold.shipping_rate_cards", (), "spark_jobs.score",
              "Expected carrier invoice of a parcel at each weight band's upper weight, by the champion shipping "
              "model, beside the published rate; the cheapest carrier marked. One row per delivery_zone, "
              "weight_band_kg, service_level, carrier and valid_from.",
              postgres_key=("valid_from", "delivery_zone", "service_level", "weight_band_kg", "carrier")),
        Table("gold.experiment_readout", (), "spark_jobs.readout",
              "Each readout of an A/B experiment: per metric (conversion, add-to-cart and cart abandonment rates, "
              "revenue and margin per visitor) and variant the value, visitors, lift against the control with its "
              "95% interval and p-value, and the sample-ratio-mismatch p-value. One row per readout_id, experiment, "
              "metric and variant."),
        Table("gold.monitoring_metrics", (), "spark_jobs.monitor",
              "What each monitoring run measured and how its alert rules judged it: freshness, volume, quality "
              "failures per quality run, schema drift, feature PSI, model MAE, experiment readout, API latency and "
              "errors. One row per run, check, subject and metric (and observed_at for the quality history)."),
        Table("gold.alerts", (), "spark_jobs.monitor",
              "The alert log: each PagerDuty Events v2 trigger or resolve sent to the webhook, with its body, "
              "outcome and HTTP status. One row per alert event sent or attempted."),
        Table("ops.gold_progress", (), "spark_jobs.gold",
              "One row per silver table and gold build: the silver version the build read (a re-run on the same "
              "versions is skipped)."),
        Table("ops.quality_results", (), "spark_jobs.silver",
              "One row per quality rule and promotion batch: run id, table, rule, expectation, severity, "
              "success, unexpected and element counts, time."),
        Table("ops.schema_drift", (), "spark_jobs.silver",
              "One row per schema change seen in a promotion batch: a field rescued in _rescued_data "
              "(new_field) or a declared column null in every row (missing_column), with its row count."),
        Table("ops.silver_progress", (), "spark_jobs.silver",
              "One row per bronze table and promotion run: the _ingested_at watermark promoted up to, the "
              "bronze version read, rows read, promoted and quarantined."),
    ]
}


def table(name: str) -> Table:
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known: {', '.join(sorted(TABLES))}") from None


def synced_tables() -> list[Table]:
    """The tables synced to the operational database, in registry order."""
    return [t for t in TABLES.values() if t.postgres_key]


def registry_as_json(settings: Settings, layer: Layer | None = None) -> list[dict]:
    """The registry as JSON-ready dicts, one per table, for tools that need to find the tables."""
    return [
        {"name": t.name, "layer": t.layer, "location": t.location(settings),
         "partition_by": list(t.partition_by), "stats_columns": list(t.stats_columns), "owner": t.owner,
         "description": t.description, **({"postgres_key": list(t.postgres_key)} if t.postgres_key else {})}
        for t in TABLES.values()
        if layer is None or t.layer == layer
    ]
