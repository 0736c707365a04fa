"""Streaming features: the bronze streams -> the online tables the API reprices from, exactly once.

Thin job around `features.live`. It runs in the streaming driver beside the bronze queries
(`streaming.bronze`), one query per online feature set, each with its checkpoint:

- `gold.live_activity`, one query per window length (`ACTIVITY_WINDOWS`): clickstream events of
  `bronze.clickstream_stream`, in event time, with a watermark of `LATENESS` (a later event is not
  counted) and de-duplicated by event id within it; the sliding windows' counts, emitted as they change
  (update mode), are MERGEd in with their demand index against `gold.demand_profile`. A window's row
  always holds its full count, so a replayed batch writes the same values again. Windows that ended
  more than `RETENTION` ago are deleted.
- `gold.live_competitor_prices`: competitor observations of `bronze.market_prices_stream` (rejected
  messages never got there), in USD, MERGEd in when newer than the stored one for that SKU and
  competitor; late and repeated observations change nothing.

The online tables are Delta tables: the API reads them with delta-rs, as it reads gold.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from features.live import (
    ACTIVITY_WINDOWS,
    LATENESS,
    activity_events,
    competitor_prices,
    latest_per_competitor,
    windowed_activity,
    with_demand_index,
)
from lakehouse import delta
from lakehouse.delta import delta_exists, read_delta
from lakehouse.schemas.gold import DEMAND_PROFILE
from lakehouse.schemas.live import LIVE_ACTIVITY, LIVE_COMPETITOR_PRICES
from lakehouse.schemas.silver import FX_RATES
from lakehouse.settings import Settings
from lakehouse.tables import Table, table

log = logging.getLogger(__name__)

ACTIVITY = table("gold.live_activity")
COMPETITOR_PRICES = table("gold.live_competitor_prices")
# How long a window's row stays after the window ended: the API only reads the current windows.
RETENTION = timedelta(hours=2)
# How often a writer reads its reference table again (a new gold build, new fx rates).
REFERENCE_REFRESH_S = 60.0

# Starts a query: True for its first start in this run, False for a restart after a failure.
Starter = Callable[[bool], StreamingQuery]


class _Reference:
    """A small table a writer joins, read again every REFERENCE_REFRESH_S; empty with `schema` until it exists."""

    def __init__(self, settings: Settings, name: str, schema):
        self.settings, self.name, self.schema = settings, name, schema
        self._frame: DataFrame | None = None
        self._read_at = -REFERENCE_REFRESH_S

    def get(self, spark: SparkSession) -> DataFrame:
        if time.monotonic() - self._read_at >= REFERENCE_REFRESH_S:
            if self._frame is not None:
                self._frame.unpersist()
            location = table(self.name).location(self.settings)
            frame = (read_delta(spark, location) if delta_exists(spark, location)
                     else spark.createDataFrame([], self.schema))
            self._frame, self._read_at = frame.persist(), time.monotonic()
        return self._frame


class ActivityWriter:
    """The `foreachBatch` function of one window length: demand index, MERGE, and now and then a clean-up."""

    def __init__(self, settings: Settings, minutes: int):
        self.settings, self.minutes = settings, minutes
        self.profile = _Reference(settings, "gold.demand_profile", DEMAND_PROFILE)
        self._cleaned_at = -REFERENCE_REFRESH_S

    def __call__(self, windows: DataFrame, batch_id: int) -> None:
        if windows.isEmpty():  # a batch that only moved the watermark
            return
        rows = with_demand_index(windows, self.profile.get(windows.sparkSession))
        scope = f"t.window_minutes = {self.minutes}"  # the other length's query writes the other partition
        delta.merge(rows, ACTIVITY, self.settings, ("sku", "window_minutes", "window_end"), newer="true", scope=scope)
        if time.monotonic() - self._cleaned_at >= REFERENCE_REFRESH_S:
            newest = windows.agg(F.max("window_end")).first()[0]
            delta.delete(windows.sparkSession, ACTIVITY, self.settings,
                         f"window_minutes = {self.minutes} AND window_end < '{newest - RETENTION}'")
            self._cleaned_at = time.monotonic()


class CompetitorPriceWriter:
    """The `foreachBatch` function of the competitor prices: each competitor's latest price, MERGEd if newer."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.fx = _Reference(settings, "silver.fx_rates", FX_RATES)

    def __call__(self, observations: DataFrame, batch_id: int) -> None:
        rows = latest_per_competitor(competitor_prices(observations, self.fx.get(observations.sparkSession)))
        delta.merge(rows, COMPETITOR_PRICES, self.settings, ("sku", "competitor"),
                    newer="s.observed_at > t.observed_at")


def ensure_tables(spark: SparkSession, settings: Settings) -> None:
    """Create the online tables empty if missing: two queries creating one with their first batches would
    conflict."""
    for target, schema in ((ACTIVITY, LIVE_ACTIVITY), (COMPETITOR_PRICES, LIVE_COMPETITOR_PRICES)):
        if not delta_exists(spark, target.location(settings)):
            delta.create(spark.createDataFrame([], schema), target, settings)


def _stream(spark: SparkSession, settings: Settings, source: Table) -> DataFrame:
    return spark.readStream.format("delta").load(source.location(settings))


def _start(frame: DataFrame, name: str, settings: Settings, writer, mode: str, trigger: dict) -> StreamingQuery:
    query = (frame.writeStream.queryName(name).outputMode(mode).foreachBatch(writer)
             .option("checkpointLocation", str(settings.checkpoints_dir / name)).trigger(**trigger).start())
    log.info("feature query started", extra={"query": name, "query_id": query.id, **trigger})
    return query


def activity_starter(spark: SparkSession, settings: Settings, minutes: int, trigger: dict) -> Starter:
    def start(first: bool) -> StreamingQuery:
        events = (activity_events(_stream(spark, settings, table("bronze.clickstream_stream")))
                  .withWatermark("event_time", LATENESS).dropDuplicatesWithinWatermark(["event_id"]))
        return _start(windowed_activity(events, minutes), f"{ACTIVITY.name}_{minutes}m", settings,
                      ActivityWriter(settings, minutes), "update", trigger)
    return start


def competitor_starter(spark: SparkSession, settings: Settings, trigger: dict) -> Starter:
    def start(first: bool) -> StreamingQuery:
        return _start(_stream(spark, settings, table("bronze.market_prices_stream")), COMPETITOR_PRICES.name,
                      settings, CompetitorPriceWriter(settings), "append", trigger)
    return start


def feature_starters(spark: SparkSession, settings: Settings, trigger: dict) -> list[Starter]:
    """One starter per feature query whose bronze stream exists (the bronze queries create them), the online
    tables created; `trigger` is `DataStreamWriter.trigger`'s keyword (`processingTime=...` or
    `availableNow=True`)."""
    ensure_tables(spark, settings)
    wanted = {"bronze.clickstream_stream": [activity_starter(spark, settings, minutes, trigger)
                                            for minutes in ACTIVITY_WINDOWS],
              "bronze.market_prices_stream": [competitor_starter(spark, settings, trigger)]}
    missing = [name for name in wanted if not delta_exists(spark, table(name).location(settings))]
    if missing:
        log.warning("no bronze stream yet: its feature queries are not started", extra={"tables": missing})
    return [starter for name, starters in wanted.items() if name not in missing for starter in starters]
