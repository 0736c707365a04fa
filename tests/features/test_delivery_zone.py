"""Delivery zone mapping: postal codes as sent -> zip5 -> zone and remote flag from the zone chart."""

from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from features.delivery_zone import with_delivery_zone, zip5


def test_postal_codes_as_sent_map_to_their_zone_and_remote_flag(spark):
    chart = spark.createDataFrame([("021", 3, False), ("995", 8, True), ("076", 1, False)],
                                  "postal_prefix string, zone int, is_remote boolean")
    sent = spark.createDataFrame([("o1", "02139"), ("o2", "2139"), ("o3", " 99501-0042"), ("o4", "07601"),
                                  ("o5", "55555"), ("o6", None), ("o7", "abc")], "order_id string, postal_code string")

    zoned = with_delivery_zone(sent.withColumn("postal_code", zip5(F.col("postal_code"))), chart)

    assertDataFrameEqual(zoned, [
        Row("o1", "02139", 3, False), Row("o2", "02139", 3, False), Row("o3", "99501", 8, True),
        Row("o4", "07601", 1, False), Row("o5", "55555", None, None), Row("o6", None, None, None),
        Row("o7", None, None, None)])
