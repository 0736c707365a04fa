"""The silver transforms on small hand-made frames: whole-DataFrame equality against hand-computed rows."""

from datetime import date, datetime

import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual
from silver_helpers import bronze_frame

from lakehouse.sources import SOURCES
from transforms.standardize import (
    References,
    bronze_profile,
    canonical_sku,
    key_hash,
    latest_per_key,
    missing_columns,
    repeated_keys,
    rescued_fields,
    standardize,
    to_cm,
    to_kg,
    utc_timestamp,
    with_delivery_zone,
    with_usd,
    zip5,
)

T0 = datetime(2026, 8, 2, 6, 0)
T1 = datetime(2026, 8, 4, 6, 0)


def _fx(spark):
    return spark.createDataFrame(
        [(date(2026, 8, 1), "USD", 1.0), (date(2026, 8, 1), "EUR", 1.10), (date(2026, 8, 3), "EUR", 1.20)],
        "rate_date date, currency string, rate_to_usd double")


def _zones(spark):
    return spark.createDataFrame([("021", 3, False), ("995", 8, True)],
                                 "postal_prefix string, zone int, is_remote boolean")


def test_skus_in_every_spelling_become_canonical_and_unknown_ones_null(spark):
    frame = spark.createDataFrame([(s,) for s in ["SKU-000123", "sku000123", "SKU_123", " 000123 ", "Sku-000123",
                                                  "SKU-1234567", "ABC-000123"]], "sku string")
    assertDataFrameEqual(frame.select("sku", canonical_sku(F.col("sku")).alias("canonical")), [
        Row("SKU-000123", "SKU-000123"), Row("sku000123", "SKU-000123"), Row("SKU_123", "SKU-000123"),
        Row(" 000123 ", "SKU-000123"), Row("Sku-000123", "SKU-000123"), Row("SKU-1234567", None),
        Row("ABC-000123", None)])


def test_postal_codes_become_five_digit_zips(spark):
    frame = spark.createDataFrame([(p,) for p in ["02139", "2139", " 02139-1234", "02139-1234", "n/a", None]],
                                  "postal_code string")
    assertDataFrameEqual(frame.select("postal_code", zip5(F.col("postal_code")).alias("zip")), [
        Row("02139", "02139"), Row("2139", "02139"), Row(" 02139-1234", "02139"), Row("02139-1234", "02139"),
        Row("n/a", None), Row(None, None)])


def test_weights_convert_to_kg_and_dimensions_to_cm(spark):
    frame = spark.createDataFrame(
        [(1200.0, "g", 10.0, "cm"), (1.5, "kg", 2.0, "in"), (2.0, "lb", 1.0, "IN"), (3.0, "oz", 1.0, "ft")],
        "weight double, weight_unit string, length double, dim_unit string")
    assertDataFrameEqual(frame.select(to_kg(F.col("weight"), F.col("weight_unit")).alias("kg"),
                                      to_cm(F.col("length"), F.col("dim_unit")).alias("cm")), [
        Row(1.2, 10.0), Row(1.5, 5.08), Row(0.90718474, 2.54), Row(None, None)])


def test_event_times_with_mixed_offsets_parse_to_utc(spark):
    frame = spark.createDataFrame([("2026-08-05T16:01:12.793-08:00",), ("2026-08-06T01:30:00.000+02:00",),
                                   ("2026-08-05T23:59:59.999+00:00",), ("yesterday",)], "event_time string")
    assertDataFrameEqual(frame.select(utc_timestamp(F.col("event_time")).alias("utc")), [
        Row(datetime(2026, 8, 6, 0, 1, 12, 793000)), Row(datetime(2026, 8, 5, 23, 30)),
        Row(datetime(2026, 8, 5, 23, 59, 59, 999000)), Row(None)])


def test_money_converts_at_the_latest_rate_on_or_before_the_date(spark):
    frame = spark.createDataFrame([
        (1, "EUR", 10.0, date(2026, 8, 2)),  # the 08-01 rate still holds
        (2, "EUR", 10.0, date(2026, 8, 3)),  # new rate that day
        (3, "EUR", 10.0, date(2026, 9, 30)),  # past the last rate: the last one
        (4, "USD", 10.0, date(2026, 8, 2)),
        (5, "EUR", 10.0, date(2026, 7, 31)),  # before the first rate
        (6, "XYZ", 10.0, date(2026, 8, 2)),  # unknown currency
        (7, "EUR", None, date(2026, 8, 2)),
    ], "id int, currency string, price double, day date")
    assertDataFrameEqual(with_usd(frame, _fx(spark), ("price",), "day").select("id", "price_usd"), [
        Row(1, 11.0), Row(2, 12.0), Row(3, 12.0), Row(4, 10.0), Row(5, None), Row(6, None), Row(7, None)])


def test_postal_codes_map_to_zones_by_their_three_digit_prefix(spark):
    frame = spark.createDataFrame([("02139",), ("99501",), ("55555",), (None,)], "postal_code string")
    assertDataFrameEqual(with_delivery_zone(frame, _zones(spark)), [
        Row("02139", 3, False), Row("99501", 8, True), Row("55555", None, None), Row(None, None, None)])


def test_transactions_standardize_to_the_silver_schema(spark):
    line = {"event_id": "e1", "order_id": "o1", "line_number": 1, "customer_id": "c1", "sku": "SKU-000007",
            "quantity": 2, "unit_price_paid": 10.0, "currency": "EUR", "event_time": "2026-08-02T23:30:00.000-05:00",
            "postal_code": "2139-0001", "carrier": "northpost", "service_level": "standard",
            "shipping_charged": 5.0, "actual_shipping_cost": 4.5, "session_id": "s1"}
    bronze = bronze_frame(spark, "transactions", [(line, '{"coupon_code":"SAVE5"}', T0, date(2026, 8, 3))])

    silver = standardize("transactions", bronze, References(fx=_fx(spark), zones=_zones(spark)))

    # 23:30 at -05:00 is 04:30 UTC the next day, so the 08-03 EUR rate applies.
    expected = spark.createDataFrame([(
        "e1", "o1", 1, "c1", "s1", "SKU-000007", 2, "EUR", 10.0, 12.0, 5.0, 6.0, 4.5,
        datetime(2026, 8, 3, 4, 30), date(2026, 8, 3), "02139", 3, False, "northpost", "standard",
        '{"coupon_code":"SAVE5"}', "file:2026-08-03", "batch-0600", T0, date(2026, 8, 3))],
        SOURCES["transactions"].silver)
    assertDataFrameEqual(silver, expected)


def test_products_standardize_units_sku_and_usd(spark):
    product = {"sku": "sku000042", "product_name": "Kettle", "category": "Kitchen", "brand": "Acme", "weight": 2.0,
               "weight_unit": "lb", "length": 10.0, "width": 5.0, "height": 4.0, "dim_unit": "in", "list_price": 20.0,
               "currency": "EUR", "launch_date": date(2026, 1, 1)}
    bronze = bronze_frame(spark, "products", [(product, None, T0, date(2026, 8, 2))])

    silver = standardize("products", bronze, References(fx=_fx(spark)))

    expected = spark.createDataFrame([(
        "SKU-000042", "Kettle", "kitchen", "Acme", 0.90718474, 25.4, 12.7, 10.16, "EUR", 20.0, 22.0, None, None,
        date(2026, 1, 1), None, "file:2026-08-02", "batch-0600", T0, date(2026, 8, 2))], SOURCES["products"].silver)
    assertDataFrameEqual(silver, expected)


def test_latest_delivery_wins_and_a_late_row_keeps_its_event_date(spark):
    frame = spark.createDataFrame([
        ("e1", 1, date(2026, 8, 1), date(2026, 8, 1), T0),
        ("e1", 1, date(2026, 8, 1), date(2026, 8, 3), T0),  # exact copy re-sent two days later
        ("e2", 5, date(2026, 8, 1), date(2026, 8, 1), T0),
        ("e2", 6, date(2026, 8, 1), date(2026, 8, 1), T1),  # same day re-ingested later: wins
        ("e3", 1, date(2026, 8, 2), date(2026, 8, 4), T1),  # late arrival for 08-02
    ], "event_id string, quantity int, transaction_date date, ingest_date date, _ingested_at timestamp"
    ).withColumn("_source_file", F.concat(F.lit("f"), F.col("ingest_date").cast("string")))

    assertDataFrameEqual(latest_per_key(frame, ("event_id",)).drop("_source_file"), [
        Row("e1", 1, date(2026, 8, 1), date(2026, 8, 3), T0),
        Row("e2", 6, date(2026, 8, 1), date(2026, 8, 1), T1),
        Row("e3", 1, date(2026, 8, 2), date(2026, 8, 4), T1)])


def test_repeated_keys_spare_the_sort_and_give_the_same_rows(spark):
    frame = spark.createDataFrame([
        ("o1", 1, 10, date(2026, 8, 1), T0),
        ("o1", 1, 11, date(2026, 8, 3), T0),  # re-sent: wins
        ("o1", 2, 20, date(2026, 8, 1), T0),  # other line of the order: its own key
        (None, 1, 30, date(2026, 8, 1), T0),
        (None, 1, 31, date(2026, 8, 1), T1),  # a null order id is one key, like any other: wins
        (None, 2, 40, date(2026, 8, 1), T0),
        ("o2", None, 50, date(2026, 8, 2), T0),
    ], "order_id string, line_number int, quantity int, ingest_date date, _ingested_at timestamp"
    ).withColumn("_source_file", F.lit("f"))
    keys = ("order_id", "line_number")

    repeated = repeated_keys(frame, keys)

    hashes_of = spark.createDataFrame([("o1", 1), (None, 1)], "order_id string, line_number int")
    assertDataFrameEqual(repeated, hashes_of.select(key_hash(keys).alias("_key_hash")))
    # A hash shared with another key (here the single ("o2", None)) only ranks that key's rows too.
    colliding = repeated.unionByName(frame.where("quantity = 50").select(key_hash(keys).alias("_key_hash")))
    expected = [Row("o1", 1, 11), Row("o1", 2, 20), Row(None, 1, 31), Row(None, 2, 40), Row("o2", None, 50)]
    for ranked in (latest_per_key(frame, keys, repeated), latest_per_key(frame, keys, colliding),
                   latest_per_key(frame, keys)):
        assertDataFrameEqual(ranked.select(*keys, "quantity"), expected)


def test_a_bronze_profile_finds_rescued_fields_and_declared_columns_that_never_came(spark):
    product = {"sku": "SKU-000001", "product_name": "Kettle", "category": "kitchen", "weight": 1.0,
               "weight_unit": "kg", "length": 1.0, "width": 1.0, "height": 1.0, "dim_unit": "cm", "list_price": 9.0,
               "currency": "USD", "launch_date": date(2026, 1, 1)}  # no brand; map_price is optional
    bronze = bronze_frame(spark, "products", [(product, '{"color":"red"}', T0, date(2026, 8, 2)),
                                         (product, None, T1, date(2026, 8, 4))])
    checked = [f.name for f in SOURCES["products"].landing.fields if f.name != "map_price"]

    profile = bronze_profile(bronze, "products", SOURCES["products"].landing)

    assertDataFrameEqual(profile, [Row(rows=2, watermark=T1, first_ingest_date=date(2026, 8, 2), rescued_rows=1,
                                       present=Row(**{c: 0 if c == "brand" else 2 for c in checked}))])
    assert missing_columns(profile.collect()) == [("brand", 2)]
    assertDataFrameEqual(rescued_fields(bronze), [Row(column="color", rows=1)])


def test_a_column_sent_in_one_slice_of_a_batch_is_not_missing(spark):
    first = Row(rows=3, present=Row(sku=3, brand=0))
    assert missing_columns([first, Row(rows=2, present=Row(sku=2, brand=1))]) == []
    assert missing_columns([first, Row(rows=2, present=Row(sku=2, brand=0))]) == [("brand", 5)]


def test_standardization_without_its_reference_data_says_what_to_promote(spark):
    with pytest.raises(ValueError, match="reference data 'fx'"):
        standardize("suppliers", spark.createDataFrame([], SOURCES["suppliers"].landing), References())

