"""The streaming features' queries on hand-written bronze rows, run step by step (available-now): late,
duplicate and out-of-order events, across the watermark; latest competitor prices whatever the order."""

import os
import signal
import subprocess
import sys
import time
from datetime import datetime

import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from features.live import windowed_activity
from lakehouse.delta import read_delta
from lakehouse.settings import Settings
from lakehouse.tables import table
from streaming.features import activity_starter, competitor_starter, ensure_tables

AVAILABLE_NOW = {"availableNow": True}
CLICKS = "event_id string, sku string, event_type string, event_time string"


@pytest.fixture
def lake(spark, settings, tmp_path) -> Settings:
    own = Settings(state_dir=tmp_path, jars_dir=settings.jars_dir)
    ensure_tables(spark, own)
    return own


def _append(spark, lake, name, rows, schema) -> None:
    spark.createDataFrame(rows, schema).write.format("delta").mode("append").save(table(name).location(lake))


def _run(starter) -> None:
    query = starter(True)
    query.awaitTermination()
    assert query.exception() is None


def test_the_watermark_drops_what_is_too_late_and_the_event_id_counts_a_duplicate_once(spark, lake):
    clicks = [("e1", "SKU-000001", "view", "2026-11-02T10:00:30+00:00"),
              ("e2", "SKU-000001", "view", "2026-11-02T10:05:00+00:00"),
              ("e3", "sku1", "add_to_cart", "2026-11-02T05:02:00-05:00"),  # 10:02 UTC, after e2: out of order
              ("e1", "SKU-000001", "view", "2026-11-02T10:00:30+00:00")]  # the same event again
    _append(spark, lake, "bronze.clickstream_stream", clicks, CLICKS)
    _run(activity_starter(spark, lake, 15, AVAILABLE_NOW))
    # The newest event (10:30) moves the watermark to 10:20 ...
    _append(spark, lake, "bronze.clickstream_stream", [("e4", "SKU-000002", "view", "2026-11-02T10:30:00+00:00")],
            CLICKS)
    _run(activity_starter(spark, lake, 15, AVAILABLE_NOW))
    # ... so an event of 10:03 is too late now; e2 again is a duplicate; 10:25 still counts.
    _append(spark, lake, "bronze.clickstream_stream", [
        ("e5", "SKU-000001", "purchase", "2026-11-02T10:03:00+00:00"),
        ("e2", "SKU-000001", "view", "2026-11-02T10:05:00+00:00"),
        ("e6", "SKU-000001", "view", "2026-11-02T10:25:00+00:00")], CLICKS)
    _run(activity_starter(spark, lake, 15, AVAILABLE_NOW))

    counted = spark.createDataFrame([
        ("e1", "SKU-000001", "view", datetime(2026, 11, 2, 10, 0, 30)),
        ("e2", "SKU-000001", "view", datetime(2026, 11, 2, 10, 5)),
        ("e3", "SKU-000001", "add_to_cart", datetime(2026, 11, 2, 10, 2)),
        ("e4", "SKU-000002", "view", datetime(2026, 11, 2, 10, 30)),
        ("e6", "SKU-000001", "view", datetime(2026, 11, 2, 10, 25)),
    ], "event_id string, sku string, event_type string, event_time timestamp")
    expected = windowed_activity(counted, 15).withColumns(
        {"demand_index": F.lit(None).cast("double"), "add_to_cart_index": F.lit(None).cast("double")})
    online = read_delta(spark, table("gold.live_activity").location(lake))
    assertDataFrameEqual(online, expected)
    # The window 10:00-10:15 of SKU-000001 holds e1, e2 and e3; the late purchase never counted.
    [window] = online.where((F.col("sku") == "SKU-000001")
                            & (F.col("window_end") == datetime(2026, 11, 2, 10, 15))).collect()
    assert (window.views, window.add_to_carts, window.purchases) == (2, 1, 0)


def test_each_competitor_s_latest_price_stands_whatever_order_observations_arrive_in(spark, lake):
    schema = "sku string, competitor string, price double, currency string, observed_at timestamp"
    _append(spark, lake, "silver.fx_rates", [(datetime(2026, 11, 1).date(), "USD", 1.0)],
            "rate_date date, currency string, rate_to_usd double")
    _append(spark, lake, "bronze.market_prices_stream", [
        ("SKU-000001", "megamart", 9.0, "USD", datetime(2026, 11, 2, 11)),
        ("SKU-000001", "shopdirect", 12.0, "USD", datetime(2026, 11, 2, 11))], schema)
    _run(competitor_starter(spark, lake, AVAILABLE_NOW))
    _append(spark, lake, "bronze.market_prices_stream", [
        ("SKU-000001", "megamart", 7.0, "USD", datetime(2026, 11, 2, 9)),  # older: arrived late
        ("SKU-000001", "shopdirect", 11.0, "USD", datetime(2026, 11, 2, 12)),
        ("SKU-000001", "shopdirect", 11.0, "USD", datetime(2026, 11, 2, 12))], schema)  # sent twice
    _run(competitor_starter(spark, lake, AVAILABLE_NOW))

    assertDataFrameEqual(read_delta(spark, table("gold.live_competitor_prices").location(lake)), [
        Row(sku="SKU-000001", competitor="megamart", price_usd=9.0, observed_at=datetime(2026, 11, 2, 11)),
        Row(sku="SKU-000001", competitor="shopdirect", price_usd=11.0, observed_at=datetime(2026, 11, 2, 12)),
    ])


def _clicks(first: int, count: int) -> list[tuple]:
    """Events a second apart from 10:00 (all within the watermark of each other), every tenth sent twice."""
    rows = [(f"e{i}", f"SKU-00000{i % 3 + 1}", ("view", "add_to_cart", "purchase")[i % 3],
             f"2026-11-02T10:{i // 60 % 60:02d}:{i % 60:02d}+00:00") for i in range(first, first + count)]
    return rows + rows[::10]


def _online(spark, lake: Settings):
    return read_delta(spark, table("gold.live_activity").location(lake))


@pytest.mark.integration
def test_the_feature_job_killed_nine_mid_stream_ends_with_the_online_table_of_an_uninterrupted_run(
        spark, settings, tmp_path):
    env = {**os.environ, "LAKEHOUSE_JARS_DIR": str(settings.jars_dir)}
    killed, reference = (Settings(state_dir=tmp_path / name, jars_dir=settings.jars_dir)
                         for name in ("killed", "reference"))
    for lake in (killed, reference):
        ensure_tables(spark, lake)
        _append(spark, lake, "bronze.clickstream_stream", _clicks(0, 120), CLICKS)
    driver = subprocess.Popen(
        [sys.executable, "-m", "streaming.bronze", "--features-only", "--interval", "1 second"],
        env={**env, "LAKEHOUSE_STATE_DIR": str(killed.state_dir)}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # More rows while the queries run; kill -9 once the first window counts are committed.
        deadline = time.monotonic() + 180
        for first in range(120, 480, 120):
            _append(spark, killed, "bronze.clickstream_stream", _clicks(first, 120), CLICKS)
            time.sleep(1)
        while _online(spark, killed).count() == 0:
            assert time.monotonic() < deadline and driver.poll() is None, "no window committed"
            time.sleep(0.5)
        os.killpg(driver.pid, signal.SIGKILL)
    finally:
        driver.wait(timeout=60)
    assert driver.returncode == -signal.SIGKILL
    for first in range(120, 480, 120):
        _append(spark, reference, "bronze.clickstream_stream", _clicks(first, 120), CLICKS)
    for lake in (killed, reference):
        done = subprocess.run([sys.executable, "-m", "streaming.bronze", "--features-only", "--trigger",
                               "available-now"], env={**env, "LAKEHOUSE_STATE_DIR": str(lake.state_dir)},
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]

    assertDataFrameEqual(_online(spark, killed), _online(spark, reference))
    assert _online(spark, reference).where(F.col("window_minutes") == 60).agg(F.sum("views")).first()[0] == 160 * 60
