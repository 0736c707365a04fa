"""The live features on hand-written events and observations, compared as whole DataFrames."""

from datetime import date, datetime

from pyspark.sql import Row
from pyspark.testing import assertDataFrameEqual

from features.live import (
    activity_events,
    competitor_prices,
    latest_per_competitor,
    windowed_activity,
    with_demand_index,
)

CLICKS = "event_id string, sku string, event_type string, event_time string"


def test_activity_events_keep_the_demand_events_with_canonical_skus_and_utc_times(spark):
    bronze = spark.createDataFrame([
        ("e1", "sku000001", "view", "2026-11-02T10:00:30-05:00"),
        ("e2", "SKU-000001", "add_to_cart", "2026-11-02T15:01:00+00:00"),
        ("e3", "SKU-000001", "checkout", "2026-11-02T15:01:10+00:00"),
        ("e4", "nonsense", "view", "2026-11-02T15:01:20+00:00"),
        ("e5", "SKU-000002", "purchase", "not a time"),
    ], CLICKS)
    assertDataFrameEqual(activity_events(bronze), [
        Row(event_id="e1", sku="SKU-000001", event_type="view", event_time=datetime(2026, 11, 2, 15, 0, 30)),
        Row(event_id="e2", sku="SKU-000001", event_type="add_to_cart", event_time=datetime(2026, 11, 2, 15, 1)),
    ])


def test_sliding_windows_count_each_event_in_every_window_that_holds_it(spark):
    events = spark.createDataFrame([
        ("e1", "SKU-000001", "view", datetime(2026, 11, 2, 15, 0, 30)),
        ("e2", "SKU-000001", "add_to_cart", datetime(2026, 11, 2, 15, 1, 0)),
    ], "event_id string, sku string, event_type string, event_time timestamp")
    windows = windowed_activity(events, 2).orderBy("window_end").collect()
    assert [(r.window_start.time().isoformat(), r.window_end.time().isoformat(), r.views, r.add_to_carts,
             r.purchases) for r in windows] == [
        ("14:59:00", "15:01:00", 1, 0, 0),
        ("15:00:00", "15:02:00", 1, 1, 0),
        ("15:01:00", "15:03:00", 0, 1, 0),
    ]
    assert {(r.sku, r.window_minutes) for r in windows} == {("SKU-000001", 2)}


def test_the_demand_index_compares_a_window_with_the_level_expected_at_that_hour_of_the_week(spark):
    # Monday 2026-11-23: ISO day 1. The 60-minute window ending 11:00 is judged in the 10:00 hour.
    activity = spark.createDataFrame([
        ("SKU-000001", 60, datetime(2026, 11, 23, 10), datetime(2026, 11, 23, 11), 12, 3, 1),
        ("SKU-000001", 15, datetime(2026, 11, 23, 10, 50), datetime(2026, 11, 23, 11, 5), 6, 0, 0),
        ("SKU-000002", 60, datetime(2026, 11, 23, 10), datetime(2026, 11, 23, 11), 5, 0, 0),
    ], "sku string, window_minutes int, window_start timestamp, window_end timestamp, views long, "
       "add_to_carts long, purchases long")
    profile = spark.createDataFrame([
        ("SKU-000001", "toys", date(2026, 11, 23), 1, 10, 4.0, 1.5),
        ("SKU-000001", "toys", date(2026, 11, 23), 1, 11, 8.0, 0.0),
    ], "sku string, category string, as_of_date date, day_of_week int, hour_of_day int, "
       "expected_views_per_hour double, expected_add_to_carts_per_hour double")
    assertDataFrameEqual(with_demand_index(activity, profile), [
        Row(sku="SKU-000001", window_minutes=60, window_start=datetime(2026, 11, 23, 10),
            window_end=datetime(2026, 11, 23, 11), views=12, add_to_carts=3, purchases=1, demand_index=3.0,
            add_to_cart_index=2.0),
        Row(sku="SKU-000001", window_minutes=15, window_start=datetime(2026, 11, 23, 10, 50),
            window_end=datetime(2026, 11, 23, 11, 5), views=6, add_to_carts=0, purchases=0, demand_index=3.0,
            add_to_cart_index=None),
        Row(sku="SKU-000002", window_minutes=60, window_start=datetime(2026, 11, 23, 10),
            window_end=datetime(2026, 11, 23, 11), views=5, add_to_carts=0, purchases=0, demand_index=None,
            add_to_cart_index=None),
    ])


def test_each_competitor_s_latest_observation_in_usd_wins(spark):
    market = spark.createDataFrame([
        ("sku1", "megamart", 10.0, "USD", datetime(2026, 11, 2, 10)),
        ("SKU-000001", "megamart", 9.0, "USD", datetime(2026, 11, 2, 11)),
        ("SKU-000001", "megamart", 8.0, "USD", datetime(2026, 11, 2, 9)),  # older, arrived later
        ("SKU-000001", "euroshop", 10.0, "EUR", datetime(2026, 11, 2, 10)),
    ], "sku string, competitor string, price double, currency string, observed_at timestamp")
    fx = spark.createDataFrame([(date(2026, 11, 1), "USD", 1.0), (date(2026, 11, 1), "EUR", 1.1),
                                (date(2026, 11, 3), "EUR", 1.2)], "rate_date date, currency string, rate_to_usd double")
    assertDataFrameEqual(latest_per_competitor(competitor_prices(market, fx)), [
        Row(sku="SKU-000001", competitor="megamart", price_usd=9.0, observed_at=datetime(2026, 11, 2, 11)),
        Row(sku="SKU-000001", competitor="euroshop", price_usd=11.0, observed_at=datetime(2026, 11, 2, 10)),
    ])
