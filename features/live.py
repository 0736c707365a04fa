"""The live features, pure transforms: what the streams say about each SKU now.

- Activity: views, add-to-carts and purchases per SKU over sliding windows of `ACTIVITY_WINDOWS` minutes
  (sliding every minute), in event time; with the demand index, the window's views against the SKU's
  expected level for that hour of the week (`gold.demand_profile`).
- Competitor prices: each competitor's latest observed price per SKU, in USD.

The streaming job (`streaming.features`) adds the watermark and the de-duplication by event id around
these; everything here works on a batch DataFrame as well, which is how the tests drive it.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from features.demand_profile import iso_day_of_week
from features.pricing import ratio
from transforms.standardize import canonical_sku, utc_timestamp, with_usd

# The sliding windows, in minutes; each slides every SLIDE.
ACTIVITY_WINDOWS = (15, 60)
SLIDE = "1 minute"
# An event arriving this much later than the newest event seen is too late to count (the watermark); a
# duplicate event id within it counts once.
LATENESS = "10 minutes"
ACTIVITY_KINDS = ("view", "add_to_cart", "purchase")


def activity_events(clickstream: DataFrame) -> DataFrame:
    """Clickstream bronze rows -> the events that count as demand, keyed and timed: event_id, canonical sku,
    event_type and event_time (UTC). Rows without a recognisable SKU or time are left out (silver's gates
    judge those). Grain: one row per counted event."""
    events = clickstream.select(
        "event_id", canonical_sku(F.col("sku")).alias("sku"), "event_type",
        utc_timestamp(F.col("event_time")).alias("event_time"))
    return events.where(F.col("sku").isNotNull() & F.col("event_time").isNotNull()
                        & F.col("event_type").isin(*ACTIVITY_KINDS))


def windowed_activity(events: DataFrame, minutes: int) -> DataFrame:
    """Activity events -> counts per SKU and sliding window of `minutes`: window_minutes, window_start,
    window_end, views, add_to_carts, purchases. Grain: one row per SKU and window with an event."""
    counted = events.groupBy("sku", F.window("event_time", f"{minutes} minutes", SLIDE).alias("w")).agg(
        *[F.count_if(F.col("event_type") == kind).alias(f"{kind}s") for kind in ACTIVITY_KINDS])
    return counted.select(
        "sku", F.lit(minutes).alias("window_minutes"), F.col("w.start").alias("window_start"),
        F.col("w.end").alias("window_end"), "views", "add_to_carts", "purchases")


def window_hour(window_end: Column) -> tuple[Column, Column]:
    """(ISO day of week, UTC hour) a window is judged in: those of its last instant."""
    last = window_end - F.expr("INTERVAL 1 SECOND")
    return iso_day_of_week(last), F.hour(last)


def with_demand_index(activity: DataFrame, profile: DataFrame) -> DataFrame:
    """`windowed_activity` rows with `demand_index` and `add_to_cart_index`: the window's count over the count
    the SKU's demand profile expects in a window that long at that hour of the week (1 is normal; null when
    the profile expects nothing). Grain: the input's."""
    day, hour = window_hour(F.col("window_end"))
    expected = profile.select("sku", "day_of_week", "hour_of_day", "expected_views_per_hour",
                              "expected_add_to_carts_per_hour")
    hours = F.col("window_minutes") / 60
    joined = activity.withColumns({"_day": day, "_hour": hour}).join(
        F.broadcast(expected),
        (activity["sku"] == expected["sku"]) & (F.col("_day") == expected["day_of_week"])
        & (F.col("_hour") == expected["hour_of_day"]), "left")
    return joined.select(
        activity["*"],
        ratio(F.col("views"), F.col("expected_views_per_hour") * hours).alias("demand_index"),
        ratio(F.col("add_to_carts"), F.col("expected_add_to_carts_per_hour") * hours).alias("add_to_cart_index"))


def competitor_prices(market: DataFrame, fx: DataFrame) -> DataFrame:
    """Market-price bronze rows -> sku (canonical), competitor, price_usd (at the fx rate of the observation
    date, `silver.fx_rates`) and observed_at. Grain: one row per observation."""
    observed = market.select(canonical_sku(F.col("sku")).alias("sku"), "competitor", "price", "currency",
                             "observed_at", F.to_date("observed_at").alias("observed_date"))
    return with_usd(observed, fx, ("price",), "observed_date").select("sku", "competitor", "price_usd", "observed_at")


def latest_per_competitor(prices: DataFrame) -> DataFrame:
    """Each competitor's latest price per SKU, by observation time (a repeated observation counts once).
    Grain: one row per sku and competitor."""
    newest_first = Window.partitionBy("sku", "competitor").orderBy(F.col("observed_at").desc(), "price_usd")
    return prices.withColumn("_rank", F.row_number().over(newest_first)).where(F.col("_rank") == 1).drop("_rank")
