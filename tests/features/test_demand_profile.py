"""The demand profile on hand-made rows: a SKU's recent volume spread by its category's hours of the week."""

from datetime import date, datetime

from pyspark.sql import Row
from pyspark.testing import assertDataFrameEqual

from features.demand_profile import demand_profile, iso_day_of_week


def test_a_sku_s_weekly_volume_is_spread_by_its_category_s_share_of_each_hour(spark):
    # 28 days of history for one SKU: 56 views and 28 add-to-carts in all (14 and 7 per week).
    daily = spark.createDataFrame(
        [("SKU-000001", "toys", date(2026, 11, 1 + d), 2, 1) for d in range(28)],
        "sku string, category string, date date, views long, add_to_carts long")
    # The category's events: 3 views on Mondays at 10:00 UTC, 1 view and 1 add-to-cart on Saturdays at 20:00.
    monday, saturday = datetime(2026, 11, 23, 10, 5), datetime(2026, 11, 28, 20, 30)
    clicks = [("SKU-000001", "view", monday)] * 3 + [("SKU-000002", "view", saturday),
                                                      ("SKU-000002", "add_to_cart", saturday)]
    clickstream = spark.createDataFrame([(s, t, at, at.date()) for s, t, at in clicks],
                                        "sku string, event_type string, event_time timestamp, event_date date")
    products = spark.createDataFrame([("SKU-000001", "toys"), ("SKU-000002", "toys")], "sku string, category string")

    assertDataFrameEqual(demand_profile(daily, clickstream, products), [
        Row(sku="SKU-000001", category="toys", as_of_date=date(2026, 11, 29), day_of_week=1, hour_of_day=10,
            expected_views_per_hour=14 * 3 / 4, expected_add_to_carts_per_hour=0.0),
        Row(sku="SKU-000001", category="toys", as_of_date=date(2026, 11, 29), day_of_week=6, hour_of_day=20,
            expected_views_per_hour=14 * 1 / 4, expected_add_to_carts_per_hour=7.0),
    ])


def test_iso_days_start_on_monday(spark):
    days = spark.createDataFrame([(datetime(2026, 11, 23 + d, 12),) for d in range(7)], "t timestamp")
    assert [r[0] for r in days.select(iso_day_of_week(days["t"])).collect()] == [1, 2, 3, 4, 5, 6, 7]
