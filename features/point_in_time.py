"""Point-in-time lookups: every row gets the values known at its own time, never later ones.

- `as_of_join`: labels x features of any size, per entity keys; the feature row with the greatest
  feature time <= the label time. One shuffle (a sort of both sides by key and time), no range join.
- `valid_on`: a frame x a small slowly-changing reference history (supplier costs, rate cards): the
  history row in force on a date (latest `valid_from` <= date), by a broadcast join, no shuffle.
- `training_set`: the pricing training set, `gold.pricing_daily` labels as-of joined to
  `gold.pricing_features`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from lakehouse.delta import delta_exists, read_delta
from lakehouse.settings import Settings
from lakehouse.tables import table

_TIME, _SIDE, _LABEL, _FEATURE = "_pit_time", "_pit_side", "_pit_label", "_pit_feature"
_SECONDS_PER_DAY = 86_400


def midnight_utc(day: Column) -> Column:
    """The instant a UTC date starts (00:00 UTC), whatever the session time zone."""
    return F.timestamp_seconds(F.unix_date(day) * _SECONDS_PER_DAY)


def _time_columns(labels: DataFrame, label_time_col: str, features: DataFrame,
                  feature_time_col: str) -> tuple:
    label_time, feature_time = F.col(label_time_col), F.col(feature_time_col)
    if labels.schema[label_time_col].dataType != features.schema[feature_time_col].dataType:
        # A date against a timestamp compares as that date's 00:00 in the session time zone.
        label_time, feature_time = label_time.cast("timestamp"), feature_time.cast("timestamp")
    return label_time, feature_time


def as_of_join(labels: DataFrame, features: DataFrame, keys: Sequence[str], label_time_col: str,
               feature_time_col: str) -> DataFrame:
    """Labels with, per row, the feature row of the same keys with the greatest feature time <= the label time.

    Returns every label column, then every feature column except the keys (feature time included), null
    when no feature row is that old. A feature row counts whatever its values (nulls included); feature
    rows with a null key or time match nothing, as in a join. Label rows with equal keys and time get
    the same features; if two feature rows share keys and time, one of them is taken.
    Grain: the labels' (one output row per label row).
    """
    keys = list(keys)
    label_missing = [c for c in (*keys, label_time_col) if c not in labels.columns]
    feature_missing = [c for c in (*keys, feature_time_col) if c not in features.columns]
    if label_missing or feature_missing:
        raise ValueError(f"as_of_join: labels lack {label_missing}, features lack {feature_missing}")
    feature_columns = [c for c in features.columns if c not in keys]
    clashes = sorted(set(feature_columns) & set(labels.columns))
    if clashes:
        raise ValueError(f"as_of_join: label and feature columns share the names {clashes}; rename or drop them")

    label_time, feature_time = _time_columns(labels, label_time_col, features, feature_time_col)
    label_type = labels.schema
    feature_type = StructType([features.schema[c] for c in feature_columns])
    matchable = F.lit(True)
    for column in [*map(F.col, keys), feature_time]:
        matchable = matchable & column.isNotNull()

    # Both sides in one frame, sorted by key and time; at equal times the feature row comes first, so
    # that it counts as known at the label's time. The latest feature struct so far is the answer.
    label_side = labels.select(*keys, label_time.alias(_TIME), F.lit(1).alias(_SIDE),
                               F.struct(*labels.columns).alias(_LABEL), F.lit(None).cast(feature_type).alias(_FEATURE))
    feature_side = features.where(matchable).select(
        *keys, feature_time.alias(_TIME), F.lit(0).alias(_SIDE), F.lit(None).cast(label_type).alias(_LABEL),
        F.struct(*feature_columns).alias(_FEATURE))
    so_far = Window.partitionBy(*keys).orderBy(F.col(_TIME).asc_nulls_first(), _SIDE).rowsBetween(
        Window.unboundedPreceding, Window.currentRow)
    return (label_side.unionByName(feature_side)
            .withColumn(_FEATURE, F.last(_FEATURE, ignorenulls=True).over(so_far))
            .where(F.col(_SIDE) == 1)
            .select(*[F.col(f"{_LABEL}.`{c}`").alias(c) for c in labels.columns],
                    *[F.col(f"{_FEATURE}.`{c}`").alias(c) for c in feature_columns]))


def valid_on(frame: DataFrame, on: str, history: DataFrame, keys: Sequence[str], valid_from: str,
             columns: Sequence[str]) -> DataFrame:
    """`frame` with `columns` of the `history` row in force on each row's `on` date (null when none).

    In force: the row of the same `keys` with the latest `valid_from` <= `on`, until the next one.
    `history` holds one row per (keys, valid_from) and is broadcast: reference data, not events.
    Grain: the frame's.
    """
    clashes = sorted(set(columns) & set(frame.columns))
    if clashes:
        raise ValueError(f"valid_on: frame already has columns {clashes}")
    version = Window.partitionBy(*keys).orderBy(valid_from)
    periods = history.select(*[F.col(k).alias(f"_valid_{k}") for k in keys],
                             F.col(valid_from).alias("_valid_from"),
                             F.lead(valid_from).over(version).alias("_valid_to"), *columns)
    day = F.col(on)
    in_force = (day >= F.col("_valid_from")) & (F.col("_valid_to").isNull() | (day < F.col("_valid_to")))
    for k in keys:
        in_force = in_force & (F.col(k) == F.col(f"_valid_{k}"))
    return frame.join(F.broadcast(periods), in_force, "left").drop(
        *[f"_valid_{k}" for k in keys], "_valid_from", "_valid_to")


# gold.pricing_daily columns that are the training set's labels (the rest are in the features, as of
# the label's time: competitor price, cost, MAP).
LABEL_COLUMNS = ("sku", "category", "date", "views", "add_to_carts", "purchases", "units", "revenue_usd",
                 "avg_price_usd")


def _gold(spark: SparkSession, settings: Settings, name: str) -> DataFrame:
    location = table(name).location(settings)
    if not delta_exists(spark, location):
        raise FileNotFoundError(f"{name} does not exist at {location}: run `lakehouse gold` first")
    return read_delta(spark, location)


def training_set(spark: SparkSession, settings: Settings, start: date, end: date) -> DataFrame:
    """The pricing training set for label dates `start`..`end` (inclusive), point-in-time correct.

    Each `gold.pricing_daily` row of those dates (its labels: views, add-to-carts, purchases, units,
    revenue and the price shown that day, `avg_price_usd`) gets `label_time` = its date at 00:00 UTC and
    the `gold.pricing_features` row of its SKU with the latest `feature_time` <= label_time (so only
    data from before the label's day). Columns: LABEL_COLUMNS, label_time, then every feature column
    but sku and category (`as_of_date` and `feature_time` say which row was used).
    Grain: one row per SKU and label date.
    """
    if start > end:
        raise ValueError(f"training_set: start {start} is after end {end}")
    labels = (_gold(spark, settings, "gold.pricing_daily")
              .where(F.col("date").between(F.lit(start), F.lit(end)))
              .select(*LABEL_COLUMNS, midnight_utc(F.col("date")).alias("label_time")))
    features = (_gold(spark, settings, "gold.pricing_features")
                .where(F.col("as_of_date") <= F.lit(end)).drop("category"))
    return as_of_join(labels, features, ("sku",), "label_time", "feature_time")
