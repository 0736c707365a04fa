"""The demand profile: each SKU's expected views and add-to-carts per hour, for each hour of the week.

The live features judge a streamed hour of demand against it (`features.live.with_demand_index`), so
that a normal Saturday evening is not a surge. A SKU alone has too few events per hour of the week to
estimate 168 levels; its category has enough. So the level is the SKU's mean daily volume over the last
`PROFILE_DAYS` days, spread over the week by its category's share of each hour of the week:

    expected per hour (sku, day, hour) = sku volume over PROFILE_DAYS / PROFILE_DAYS x 7
                                         x category volume in (day, hour) / category volume

summed over the 168 hours, that is the SKU's mean weekly volume. Days are ISO (1 = Monday .. 7 = Sunday)
and hours UTC, as the streamed event times are.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from features.pricing import REFERENCE_DAYS, ratio
from lakehouse.schemas.gold import DEMAND_PROFILE
from transforms.standardize import conform_to

PROFILE_DAYS = REFERENCE_DAYS


def iso_day_of_week(time: Column) -> Column:
    """1 = Monday .. 7 = Sunday (Spark's dayofweek counts from Sunday)."""
    return (F.dayofweek(time) + 5) % 7 + 1


def hour_of_week_shares(clickstream: DataFrame, products: DataFrame, first: Column, last: Column) -> DataFrame:
    """Each category's share of its views and add-to-carts falling in each hour of the week, over the
    events dated `first` to `last`. Grain: one row per category, day_of_week and hour_of_day with events."""
    events = (clickstream.where(F.col("event_date").between(first, last))
              .join(products.select("sku", "category"), "sku")
              .groupBy("category", iso_day_of_week(F.col("event_time")).alias("day_of_week"),
                       F.hour("event_time").alias("hour_of_day"))
              .agg(F.count_if(F.col("event_type") == "view").alias("views"),
                   F.count_if(F.col("event_type") == "add_to_cart").alias("add_to_carts")))
    totals = events.groupBy("category").agg(F.sum("views").alias("_views"), F.sum("add_to_carts").alias("_carts"))
    return events.join(totals, "category").select(
        "category", "day_of_week", "hour_of_day",
        ratio(F.col("views"), F.col("_views")).alias("view_share"),
        ratio(F.col("add_to_carts"), F.col("_carts")).alias("add_to_cart_share"))


def demand_profile(daily: DataFrame, clickstream: DataFrame, products: DataFrame) -> DataFrame:
    """`gold.demand_profile` as of the day after the last day of `daily` (`gold.pricing_daily`), from the
    `PROFILE_DAYS` days before it; `clickstream` and `products` are silver. A category hour without
    events expects none. Grain: one row per SKU with a category, day_of_week and hour_of_day."""
    last = daily.agg(F.max("date").alias("_last"))
    recent = (daily.crossJoin(last).where(F.col("date") > F.date_sub("_last", PROFILE_DAYS))
              .groupBy("sku", "category", "_last")
              .agg(F.sum("views").alias("_views"), F.sum("add_to_carts").alias("_carts"))
              .where(F.col("category").isNotNull()))
    bounds = last.select(F.date_sub("_last", PROFILE_DAYS - 1).alias("_first"), "_last").first()
    shares = hour_of_week_shares(clickstream, products, F.lit(bounds["_first"]), F.lit(bounds["_last"]))
    week = (F.lit(7.0) / PROFILE_DAYS)
    return conform_to(recent.join(shares, "category").select(
        "sku", "category", F.date_add("_last", 1).alias("as_of_date"), "day_of_week", "hour_of_day",
        (F.col("_views") * week * F.col("view_share")).alias("expected_views_per_hour"),
        (F.col("_carts") * week * F.col("add_to_cart_share")).alias("expected_add_to_carts_per_hour")),
        DEMAND_PROFILE)
