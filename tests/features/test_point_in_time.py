"""As-of joins: a label row only ever gets feature values from its own time or before."""

from datetime import date, datetime

import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from features.point_in_time import LABEL_COLUMNS, as_of_join, training_set, valid_on
from lakehouse.schemas.gold import PRICING_DAILY, PRICING_FEATURES
from lakehouse.settings import Settings
from lakehouse.tables import table


def _at(hour: int) -> datetime:
    return datetime(2026, 8, 3, hour)


def test_each_label_gets_the_latest_feature_row_at_or_before_its_time_and_never_a_later_one(spark):
    labels = spark.createDataFrame([
        ("s1", "a", _at(10), "L1"), ("s1", "a", _at(12), "L2"), ("s1", "b", _at(9), "L3"),
        ("s2", "a", _at(10), "L4"), (None, "a", _at(10), "L5"),
    ], "store string, sku string, label_time timestamp, label string")
    features = spark.createDataFrame([
        ("s1", "a", _at(9), 1.0),
        ("s1", "a", _at(10), None),  # at the label's own time, a null value: it is the row in force
        ("s1", "a", _at(11), 3.0),
        ("s1", "a", _at(13), 99.0),  # after every label
        ("s1", "b", datetime(2026, 8, 3, 9, 30), 98.0),  # half an hour after L3
        ("s2", "b", _at(8), 97.0),  # another key
        (None, "a", _at(8), 96.0),  # a null key matches nothing
    ], "store string, sku string, feature_time timestamp, price double")

    joined = as_of_join(labels, features, ["store", "sku"], "label_time", "feature_time")

    assertDataFrameEqual(joined, [
        Row("s1", "a", _at(10), "L1", _at(10), None),
        Row("s1", "a", _at(12), "L2", _at(11), 3.0),
        Row("s1", "b", _at(9), "L3", None, None),
        Row("s2", "a", _at(10), "L4", None, None),
        Row(None, "a", _at(10), "L5", None, None),
    ])
    assert joined.where(F.col("feature_time") > F.col("label_time")).count() == 0


def test_as_of_join_compares_a_label_date_with_feature_timestamps_at_the_date_start(spark):
    labels = spark.createDataFrame([("a", date(2026, 8, 3))], "sku string, day date")
    features = spark.createDataFrame([("a", datetime(2026, 8, 3, 0, 0), 1), ("a", datetime(2026, 8, 3, 0, 1), 2)],
                                     "sku string, feature_time timestamp, f int")

    assertDataFrameEqual(as_of_join(labels, features, ["sku"], "day", "feature_time"),
                         [Row("a", date(2026, 8, 3), datetime(2026, 8, 3, 0, 0), 1)])


def test_as_of_join_refuses_columns_it_would_have_to_shadow_or_cannot_find(spark):
    labels = spark.createDataFrame([("a", _at(1), 1.0)], "sku string, t timestamp, price double")
    features = spark.createDataFrame([("a", _at(0), 2.0)], "sku string, ft timestamp, price double")

    with pytest.raises(ValueError, match=r"share the names \['price'\]"):
        as_of_join(labels, features, ["sku"], "t", "ft")
    with pytest.raises(ValueError, match=r"labels lack \['store'\], features lack \['store'\]"):
        as_of_join(labels, features, ["store"], "t", "ft")


def test_valid_on_takes_the_history_row_in_force_on_the_date(spark):
    frame = spark.createDataFrame([("a", date(2026, 7, 31)), ("a", date(2026, 8, 1)), ("a", date(2026, 8, 9)),
                                   ("a", date(2026, 8, 10)), ("b", date(2026, 8, 5)), ("c", date(2026, 8, 5))],
                                  "sku string, day date")
    history = spark.createDataFrame([("a", date(2026, 8, 1), 5.0), ("a", date(2026, 8, 10), 6.0),
                                     ("b", date(2026, 8, 6), 7.0)], "sku string, valid_from date, cost double")

    assertDataFrameEqual(valid_on(frame, "day", history, ["sku"], "valid_from", ["cost"]), [
        Row("a", date(2026, 7, 31), None), Row("a", date(2026, 8, 1), 5.0), Row("a", date(2026, 8, 9), 5.0),
        Row("a", date(2026, 8, 10), 6.0), Row("b", date(2026, 8, 5), None), Row("c", date(2026, 8, 5), None)])


def _rows(spark, schema, values: list[dict]):
    return spark.createDataFrame([tuple(v.get(f) for f in schema.fieldNames()) for v in values], schema)


def test_training_set_joins_each_label_day_to_the_features_of_its_own_start(spark, settings, tmp_path):
    own = Settings(state_dir=tmp_path, jars_dir=settings.jars_dir)
    d1, d2, d3 = date(2026, 8, 1), date(2026, 8, 2), date(2026, 8, 3)
    daily = _rows(spark, PRICING_DAILY, [
        {"sku": "A", "category": "toys", "date": d, "views": v, "add_to_carts": 0, "purchases": p, "units": p,
         "revenue_usd": 10.0 * p, "avg_price_usd": 10.0, "competitor_min_price_usd": 9.0, "unit_cost_usd": 5.0}
        for d, v, p in ((d1, 4, 1), (d2, 5, 0), (d3, 6, 2))])
    # Features as of d2 and d3, plus one dated after every label (as of d3 + 1): it must never be used.
    features = _rows(spark, PRICING_FEATURES, [
        {"sku": "A", "category": "toys", "as_of_date": d, "feature_time": datetime(d.year, d.month, d.day),
         "sku_views_7d": views, "unit_cost_usd": 5.0}
        for d, views in ((d2, 4), (d3, 9), (date(2026, 8, 4), 15))])
    for name, frame in (("gold.pricing_daily", daily), ("gold.pricing_features", features)):
        frame.write.format("delta").partitionBy("category").save(table(name).location(own))

    result = training_set(spark, own, d1, d3)

    expected_labels = [(d1, 4, 1), (d2, 5, 0), (d3, 6, 2)]
    as_of = {d1: (None, None, None), d2: (d2, datetime(2026, 8, 2), 4), d3: (d3, datetime(2026, 8, 3), 9)}
    assertDataFrameEqual(
        result.select(*LABEL_COLUMNS, "label_time", "as_of_date", "feature_time", "sku_views_7d", "unit_cost_usd"),
        [Row("A", "toys", d, v, 0, p, p, 10.0 * p, 10.0, datetime(d.year, d.month, d.day), *as_of[d],
             5.0 if as_of[d][0] else None) for d, v, p in expected_labels])
    assert result.columns == [*LABEL_COLUMNS, "label_time",
                              *[c for c in PRICING_FEATURES.fieldNames() if c not in ("sku", "category")]]
    with pytest.raises(ValueError, match="start 2026-08-03 is after end 2026-08-01"):
        training_set(spark, own, d3, d1)
