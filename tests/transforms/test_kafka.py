"""Pure transforms of Kafka messages: whole bronze and dead-letter rows, Kafka coordinates included."""

import json
from datetime import UTC, date, datetime

from pyspark.sql import Row
from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType
from pyspark.testing import assertDataFrameEqual

from lakehouse.streams import MARKET_STREAM, StreamSource
from streaming.producer import Message, malformed
from transforms.kafka import (
    conformed_messages,
    dead_letter_rows,
    message_checks,
    stream_bronze_rows,
    with_rejections,
)

SCHEMA = StructType([StructField("event_id", StringType()), StructField("line_number", IntegerType()),
                     StructField("quantity", IntegerType()), StructField("price", DoubleType())])
SOURCE = StreamSource("transactions", SCHEMA, key="order_id", required=("event_id",))
KAFKA = "key binary, value binary, topic string, partition int, offset long, timestamp timestamp, timestampType int"
AT = datetime(2026, 11, 2, 23, 59, 59)
INGESTED = datetime(2026, 11, 3, 0, 0, 5, tzinfo=UTC)
LINEAGE = {"_batch_id": "q/7", "_ingested_at": datetime(2026, 11, 3, 0, 0, 5), "ingest_date": date(2026, 11, 2),
           "ingest_year": 2026, "ingest_month": 11, "ingest_day": 2, "_kafka_topic": "t.transactions",
           "_kafka_timestamp": AT, "_kafka_key": "o-1"}


def _conformed(spark, values):
    messages = spark.createDataFrame(
        [(b"o-1", v.encode(), "t.transactions", offset % 2, offset, AT, 0) for offset, v in enumerate(values)], KAFKA)
    return conformed_messages(messages, SOURCE, "q/7", INGESTED)


def _frame(spark, rows: list[Row], schema):
    """Expected rows given by column name, in the column order of `schema`."""
    return spark.createDataFrame([tuple(row.asDict()[name] for name in schema.names) for row in rows], schema)


def test_valid_messages_become_bronze_rows_with_their_kafka_coordinates(spark):
    conformed = _conformed(spark, ['{"event_id": "e1", "quantity": 2, "price": 9.5}',
                                   '{"event_id": "e2", "quantity": 1, "price": 3.0, "coupon_code": "SAVE5"}',
                                   '{"event_id": "e3", "quantity": "two"}'])
    expected = [
        Row(event_id="e1", line_number=None, quantity=2, price=9.5, _rescued_data=None, _source_file="kafka://t.transactions/0/0",
            _kafka_partition=0, _kafka_offset=0, **LINEAGE),
        Row(event_id="e2", line_number=None, quantity=1, price=3.0, _rescued_data='{"coupon_code":"SAVE5"}',
            _source_file="kafka://t.transactions/1/1", _kafka_partition=1, _kafka_offset=1, **LINEAGE),
    ]
    actual = stream_bronze_rows(conformed, SOURCE)
    assertDataFrameEqual(actual, _frame(spark, expected, actual.schema))


def test_bad_messages_become_dead_letters_with_the_raw_payload_and_reason(spark):
    valid = Message("transactions", "o-1", '{"event_id": "e9", "line_number": 1, "quantity": 2}', "e9")
    values = [malformed(valid, "bad_json").value, malformed(valid, "wrong_type").value,
              malformed(valid, "missing_required").value, '{"event_id": "e4", "quantity": 1}']
    reasons = ["malformed_json", "type_mismatch: line_number", "missing_required: event_id"]
    expected = [Row(source="transactions", raw=values[i], raw_encoding=None, reason=reasons[i],
                    _source_file=f"kafka://t.transactions/{i % 2}/{i}", _kafka_partition=i % 2, _kafka_offset=i,
                    **LINEAGE) for i in range(3)]
    actual = dead_letter_rows(_conformed(spark, values), SOURCE)
    assertDataFrameEqual(actual, _frame(spark, expected, actual.schema))


def test_market_messages_that_could_move_a_price_wrongly_are_dead_letters_naming_the_checks(spark):
    market = MARKET_STREAM
    observed = "2026-11-02T23:50:00+00:00"
    def message(sku: str, price: float, currency: str | None, at: str = observed) -> str:
        sent = {"sku": sku, "competitor": "megamart", "price": price, "observed_at": at}
        return json.dumps(sent if currency is None else {**sent, "currency": currency})

    values = [message("SKU-000001", 9.5, "USD"), message("sku1", 8.0, "EUR"), message("SKU-000001", -1.0, "USD"),
              message("SKU-000001", 1e9, "XXX"), message("SKU-000001", 9.0, "USD", "2026-11-03T01:00:00+00:00"),
              message("SKU-999999", 9.0, None)]
    messages = spark.createDataFrame([(b"k", v.encode(), "t.market_prices", 0, i, AT, 0) for i, v in enumerate(values)],
                                     KAFKA)
    conformed = with_rejections(conformed_messages(messages, market, "q/7", INGESTED),
                                message_checks(market, ["SKU-000001", "SKU-000002"]))

    assert sorted(r.sku for r in stream_bronze_rows(conformed, market).collect()) == ["SKU-000001", "sku1"]
    assert sorted((r._kafka_offset, r.reason) for r in dead_letter_rows(conformed, market).collect()) == [
        (2, "rejected: price_positive"),
        (3, "rejected: price_plausible, currency_known"),
        (4, "rejected: observed_at_in_future"),
        (5, "rejected: currency_present, sku_unknown"),
    ]
    # Before the first catalogue there is no SKU to check against: only the other checks apply.
    assert [name for name, _ in message_checks(market, None)] == [
        "price_present", "price_positive", "price_plausible", "currency_present", "currency_known",
        "observed_at_in_future"]


def test_a_key_or_value_that_is_not_utf8_is_kept_in_base64(spark):
    messages = spark.createDataFrame(
        [(b"\xff\xfe", b'{"event_id": "e1", "line_number": 1}', "t.transactions", 0, 0, AT, 0),
         (b"o-2", b"\xc3\x28", "t.transactions", 0, 1, AT, 0), (None, None, "t.transactions", 0, 2, AT, 0)], KAFKA)
    conformed = conformed_messages(messages, SOURCE, "q/7", INGESTED)
    assertDataFrameEqual(stream_bronze_rows(conformed, SOURCE).select("event_id", "_kafka_key"),
                         [Row(event_id="e1", _kafka_key="base64://4=")])
    assertDataFrameEqual(dead_letter_rows(conformed, SOURCE).select("raw", "raw_encoding", "reason", "_kafka_key"), [
        Row(raw="wyg=", raw_encoding="base64", reason="not_utf8", _kafka_key="o-2"),
        Row(raw=None, raw_encoding=None, reason="no_value", _kafka_key=None)])
