"""Pricing: the SKU-day labels of the demand model and the point-in-time features it is trained and served on.

`pricing_daily` aggregates the clickstream and the order lines to one row per active SKU and UTC date
(the big tables are read once, into that small table); `pricing_features` computes every window on
that daily table, so a feature row for `as_of_date` D only ever sees days before D. Definitions:
docs/features.md.
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from features.point_in_time import midnight_utc, valid_on
from lakehouse.schemas.gold import CONVERSION_WINDOWS, PRICING_DAILY, PRICING_FEATURES
from transforms.standardize import conform_to

# The window of the reference price, the anchor score and the long side of the demand momentum; the
# short side. Both are among CONVERSION_WINDOWS, whose view sums they reuse.
REFERENCE_DAYS, MOMENTUM_DAYS = 28, 7


def ratio(numerator: Column, denominator: Column) -> Column:
    """numerator / denominator, null when the denominator is zero or null (no evidence, not infinity)."""
    return F.when(denominator != 0, numerator / denominator)


def sku_day_events(clickstream: DataFrame) -> DataFrame:
    """Clickstream -> views, add-to-carts, purchase events and the mean price shown on views.

    Grain: one row per SKU and UTC event date with at least one event.
    """
    is_view = F.col("event_type") == "view"
    return clickstream.groupBy("sku", F.col("event_date").alias("date")).agg(
        F.count_if(is_view).alias("views"),
        F.count_if(F.col("event_type") == "add_to_cart").alias("add_to_carts"),
        F.count_if(F.col("event_type") == "purchase").alias("purchases"),
        F.avg(F.when(is_view, F.col("price_shown_usd"))).alias("avg_price_usd"),
    )


def sku_day_sales(transactions: DataFrame) -> DataFrame:
    """Order lines -> units sold and revenue (quantity x USD price paid).

    Grain: one row per SKU and UTC transaction date with at least one order line.
    """
    return transactions.groupBy("sku", F.col("transaction_date").alias("date")).agg(
        F.sum("quantity").cast("long").alias("units"),
        F.sum(F.col("quantity") * F.col("unit_price_paid_usd")).alias("revenue_usd"),
    )


def competitor_min_prices(market_prices: DataFrame) -> DataFrame:
    """The lowest competitor USD price observed. Grain: one row per SKU and observation date."""
    return market_prices.groupBy("sku", F.col("observed_date").alias("date")).agg(
        F.min("price_usd").alias("competitor_min_price_usd"))


def lowest_cost_history(suppliers: DataFrame) -> DataFrame:
    """The SKU's unit cost over time: at each date a supplier cost changes, the lowest USD cost among
    its suppliers' costs in force then (each supplier's latest `valid_from` <= that date).

    Grain: one row per SKU and `valid_from` (a step function; see `valid_on`).
    """
    changes = suppliers.select("sku", F.col("valid_from").alias("change_date")).distinct()
    offers = changes.join(suppliers.select("sku", "supplier_id").distinct(), "sku")
    in_force = valid_on(offers, "change_date", suppliers, ("sku", "supplier_id"), "valid_from", ("unit_cost_usd",))
    return in_force.groupBy("sku", F.col("change_date").alias("valid_from")).agg(
        F.min("unit_cost_usd").alias("unit_cost_usd"))


def active_sku_days(products: DataFrame, first: Column, last: Column) -> DataFrame:
    """Every date from `first` to `last` (aggregate columns of a one-row frame, see `pricing_daily`) on
    which each product is launched; a product without a launch date counts from `first`.

    Grain: one row per SKU and date.
    """
    start = F.greatest(F.coalesce(F.col("launch_date"), first), first)
    return products.select(
        "sku", "category", "map_price_usd",
        F.explode(F.when(start <= last, F.sequence(start, last))).alias("date"))


def sku_day_activity(clickstream: DataFrame, transactions: DataFrame) -> DataFrame:
    """`sku_day_events` and `sku_day_sales` side by side (null where a day had only one of them).

    The only pass over the big silver tables: `pricing_daily` reads this twice (its date span and its
    rows), so a job caches it. Grain: one row per SKU and UTC date with a click or an order line.
    """
    return sku_day_events(clickstream).join(sku_day_sales(transactions), ["sku", "date"], "full")


def pricing_daily(products: DataFrame, activity: DataFrame, market_prices: DataFrame,
                  suppliers: DataFrame, first: date | None = None) -> DataFrame:
    """`gold.pricing_daily`: what happened to each active SKU on each UTC date.

    `activity` is `sku_day_activity(silver.clickstream, silver.transactions)`, the rest are silver.
    Dates run from the first to the last date with a click or an order line (from `first`, when given:
    an incremental build passes its activity from that date on); days without events get zero counts.
    Events of a SKU that `products` does not know, or from before its launch, keep their row with a null
    category (the gold gate quarantines them). Grain: one row per SKU and date.
    """
    span = activity.agg(F.min("date").alias("_first"), F.max("date").alias("_last"))
    if first is not None:
        span = span.withColumn("_first", F.lit(first))
    days = active_sku_days(products.crossJoin(span), F.col("_first"), F.col("_last"))
    daily = (days.join(activity, ["sku", "date"], "full")
             .join(competitor_min_prices(market_prices), ["sku", "date"], "left")
             .fillna(0, subset=["views", "add_to_carts", "purchases", "units", "revenue_usd"]))
    daily = valid_on(daily, "date", lowest_cost_history(suppliers), ("sku",), "valid_from", ("unit_cost_usd",))
    return conform_to(daily, PRICING_DAILY)


def _trailing(by: str, days: int) -> Window:
    """The `days` days up to and including the row's date (the row is the day before as_of_date)."""
    return Window.partitionBy(by).orderBy(F.unix_date("date")).rangeBetween(-(days - 1), 0)


def _category_windows(daily: DataFrame) -> DataFrame:
    """Category views and purchases over each window, the days of history in the momentum windows (fewer
    than their length near the start of the data) and the SKUs active that day.

    Grain: one row per category and date (the day before as_of_date).
    """
    per_day = daily.groupBy("category", "date").agg(
        F.sum("views").alias("views"), F.sum("purchases").alias("purchases"), F.count(F.lit(1)).alias("skus"))
    return per_day.select(
        "category", "date", F.col("skus").alias("category_skus"),
        *[F.sum("views").over(_trailing("category", n)).alias(f"category_views_{n}") for n in CONVERSION_WINDOWS],
        *[F.sum("purchases").over(_trailing("category", n)).alias(f"category_purchases_{n}")
          for n in CONVERSION_WINDOWS],
        *[F.count(F.lit(1)).over(_trailing("category", n)).alias(f"category_days_{n}")
          for n in (MOMENTUM_DAYS, REFERENCE_DAYS)])


def pricing_features(daily: DataFrame, products: DataFrame, cost_history: DataFrame) -> DataFrame:
    """`gold.pricing_features`: what was known about each SKU at `as_of_date` 00:00 UTC.

    `daily` is `gold.pricing_daily` (every row active, category known), `cost_history` is
    `lowest_cost_history(silver.suppliers)`. The row for as_of_date D is computed from the daily row
    of D - 1 and its windows over days D - N .. D - 1, so never from D or later; calendar features,
    the cost in force on D and the product's MAP and launch date are known ahead.
    Rows: as_of_date from the first daily date + 1 to the last + 1, for every SKU active the day before.
    Grain: one row per SKU and as_of_date.
    """
    history = Window.partitionBy("sku").orderBy(F.unix_date("date")).rowsBetween(
        Window.unboundedPreceding, Window.currentRow)
    sku = daily.select(
        "sku", "category", "date",
        *[F.sum("views").over(_trailing("sku", n)).alias(f"sku_views_{n}d") for n in CONVERSION_WINDOWS],
        *[F.sum("purchases").over(_trailing("sku", n)).alias(f"_purchases_{n}") for n in CONVERSION_WINDOWS],
        *[F.sum("units").over(_trailing("sku", n)).alias(f"sku_units_{n}d") for n in (MOMENTUM_DAYS, REFERENCE_DAYS)],
        F.percentile("avg_price_usd", F.lit(0.5)).over(_trailing("sku", REFERENCE_DAYS)).alias("typical_price_usd"),
        F.last("avg_price_usd", ignorenulls=True).over(history).alias("last_price_usd"),
        F.last("competitor_min_price_usd", ignorenulls=True).over(history).alias("competitor_min_price_usd"),
    )
    as_of = F.col("as_of_date")
    features = (sku.join(F.broadcast(_category_windows(daily)), ["category", "date"])
                .join(F.broadcast(products.select("sku", "map_price_usd", "launch_date")), "sku", "left")
                .withColumn("as_of_date", F.date_add("date", 1)))
    features = valid_on(features, "as_of_date", cost_history, ("sku",), "valid_from", ("unit_cost_usd",))
    day_of_week = F.weekday(as_of) + 1

    def daily_views(days: int) -> Column:
        return ratio(F.col(f"category_views_{days}"), F.col(f"category_days_{days}"))

    return conform_to(features.withColumns({
        "feature_time": midnight_utc(as_of),
        **{f"sku_conversion_{n}d": ratio(F.col(f"_purchases_{n}"), F.col(f"sku_views_{n}d"))
           for n in CONVERSION_WINDOWS},
        **{f"category_conversion_{n}d": ratio(F.col(f"category_purchases_{n}"), F.col(f"category_views_{n}"))
           for n in CONVERSION_WINDOWS},
        "anchor_score": ratio(F.col(f"sku_views_{REFERENCE_DAYS}d"), F.col(f"category_views_{REFERENCE_DAYS}"))
        * F.col("category_skus"),
        "competitor_price_index": ratio(F.col("last_price_usd"), F.col("competitor_min_price_usd")),
        "margin_pct": 100 * ratio(F.col("last_price_usd") - F.col("unit_cost_usd"), F.col("last_price_usd")),
        "days_since_launch": F.datediff(as_of, F.col("launch_date")),
        "day_of_week": day_of_week,
        "day_of_year": F.dayofyear(as_of),
        "is_weekend": day_of_week >= 6,
        # Views per day of history, so that the first weeks of data are not read as a surge; with a full
        # history this is views_7d / (views_28d / 4).
        "category_views_7d_vs_28d": ratio(daily_views(MOMENTUM_DAYS), daily_views(REFERENCE_DAYS)),
    }), PRICING_FEATURES)
