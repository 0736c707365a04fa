import base64
import json
from datetime import date, datetime

from pyspark.sql import Row
from pyspark.sql.types import DateType, DoubleType, IntegerType, StringType, StructField, StructType
from pyspark.testing import assertDataFrameEqual

from transforms.records import (
    bronze_rows,
    conform,
    quarantine_rows,
    records_from_columns,
    records_from_json_lines,
    with_lineage,
)

SCHEMA = StructType([
    StructField("event_id", StringType()),
    StructField("quantity", IntegerType()),
    StructField("price", DoubleType()),
    StructField("day", DateType()),
])
FILE = "file:/landing/orders/ingest_date=2026-08-02/part-00000.json"


def _conformed(spark, lines):
    frame = spark.createDataFrame([(line, FILE) for line in lines], "value string, _source_file string")
    return conform(records_from_json_lines(frame), SCHEMA, required=("event_id",))


def test_json_lines_are_typed_rescued_or_rejected_with_reasons(spark):
    lines = [
        '{"event_id": "e1", "quantity": 2, "price": 9.5, "day": "2026-08-01"}',
        '{"event_id": "e2", "quantity": 1, "price": 3.0, "day": "2026-08-01", "coupon_code": "SAVE5"}',
        '{"event_id": "e3", "quantity": "two", "price": 1.0, "day": "2026-08-01"}',
        '{"quantity": 1, "price": null}',
        '{"event_id": "e5", "quantity": 1, "pri',
        '[1, 2]',
    ]
    expected = spark.createDataFrame([
        Row("e1", 2, 9.5, date(2026, 8, 1), None, None),
        Row("e2", 1, 3.0, date(2026, 8, 1), '{"coupon_code":"SAVE5"}', None),
        Row("e3", None, 1.0, date(2026, 8, 1), None, "type_mismatch: quantity"),
        Row(None, 1, None, None, None, "missing_required: event_id"),
        Row(None, None, None, None, None, "malformed_json"),
        Row(None, None, None, None, None, "malformed_json"),
    ], "event_id string, quantity int, price double, day date, _rescued_data string, _error string")

    actual = _conformed(spark, lines).drop("_raw", "_raw_encoding", "_source_file")

    assertDataFrameEqual(actual, expected)


def test_several_defects_are_all_named(spark):
    actual = _conformed(spark, ['{"quantity": 1.5, "price": "cheap"}']).select("_error")
    assertDataFrameEqual(actual, [Row(_error="type_mismatch: quantity, price; missing_required: event_id")])


def test_csv_rows_with_a_wrong_field_count_are_malformed(spark):
    rows = spark.createDataFrame(
        [("e1", "2", "9.5", "2026-08-01", None, FILE),
         (None, None, None, None, "e2,1,2.0,2026-08-01,extra", FILE)],
        "event_id string, quantity string, price string, day string, _corrupt_record string, "
        "_source_file string")

    records = records_from_columns(rows, ["event_id", "quantity", "price", "day"], "_corrupt_record")
    actual = conform(records, SCHEMA, required=("event_id",)).select("event_id", "quantity", "_raw", "_error")

    assertDataFrameEqual(actual, [
        Row("e1", 2, '{"event_id":"e1","quantity":"2","price":"9.5","day":"2026-08-01"}', None),
        Row(None, None, "e2,1,2.0,2026-08-01,extra", "malformed_csv: wrong number of fields"),
    ])


def test_good_records_go_to_bronze_and_bad_ones_to_quarantine_with_lineage(spark):
    conformed = with_lineage(_conformed(spark, ['{"event_id": "e1", "quantity": 2, "price": 9.5, "day": null}',
                                                '{"event_id": "e2"']),
                             date(2026, 8, 2), "batch-1", datetime(2026, 8, 2, 6, 0))

    assertDataFrameEqual(bronze_rows(conformed, SCHEMA), [
        Row(event_id="e1", quantity=2, price=9.5, day=None, _rescued_data=None, _source_file=FILE,
            _batch_id="batch-1", _ingested_at=datetime(2026, 8, 2, 6, 0), ingest_date=date(2026, 8, 2),
            ingest_year=2026, ingest_month=8, ingest_day=2),
    ])
    assertDataFrameEqual(quarantine_rows(conformed, "orders"), [
        Row(source="orders", raw='{"event_id": "e2"', raw_encoding=None, reason="malformed_json", _source_file=FILE,
            _batch_id="batch-1", _ingested_at=datetime(2026, 8, 2, 6, 0), ingest_date=date(2026, 8, 2),
            ingest_year=2026, ingest_month=8, ingest_day=2),
    ])


def test_bytes_that_are_not_utf8_are_quarantined_in_base64_and_no_string_column_holds_them(spark):
    """Random bytes, truncated UTF-8, a raw NUL, empty, no value at all (a Kafka tombstone), a JSON array, deep
    nesting, and a valid object around a byte that is not UTF-8: each a bad record, raw kept losslessly."""
    hostile = [b"\xff\xfe\x00garbage\x80", '{"event_id": "\u00e9'.encode()[:-1], b'{"event_id": "a\x00b"}', b"",
               None, b"[1, 2]", b"[" * 5000 + b"]" * 5000, b'{"event_id": "e\xc3\x28"}', b'{"event_id": "a\\u0000b"}']
    frame = spark.createDataFrame([(value, FILE) for value in hostile], "value binary, _source_file string")
    conformed = conform(records_from_json_lines(frame), SCHEMA, required=("event_id",))
    rows = with_lineage(conformed, date(2026, 8, 2), "b", datetime(2026, 8, 2)).orderBy("_raw")

    def encoded(value: bytes) -> str:
        return base64.b64encode(value).decode()

    assertDataFrameEqual(quarantine_rows(rows, "orders").select("raw", "raw_encoding", "reason"), [
        Row(raw=encoded(hostile[0]), raw_encoding="base64", reason="not_utf8"),
        Row(raw=encoded(hostile[1]), raw_encoding="base64", reason="not_utf8"),
        Row(raw=encoded(hostile[7]), raw_encoding="base64", reason="not_utf8"),
        Row(raw="", raw_encoding=None, reason="malformed_json"),
        Row(raw=None, raw_encoding=None, reason="no_value"),
        Row(raw="[1, 2]", raw_encoding=None, reason="malformed_json"),
        Row(raw='{"event_id": "a\x00b"}', raw_encoding=None, reason="malformed_json"),  # JSON escapes control chars
        Row(raw=hostile[6].decode(), raw_encoding=None, reason="malformed_json"),
    ])
    # An escaped NUL is valid JSON and UTF-8: that record conforms, NUL and all.
    assertDataFrameEqual(bronze_rows(rows, SCHEMA).select("event_id"), [Row(event_id="a\x00b")])


def test_a_columnar_row_with_a_field_that_is_not_utf8_is_quarantined_as_base64_json(spark):
    rows = spark.createDataFrame([(b"e1", b"2", FILE), (b"e\xff", b"3", FILE)],
                                 "event_id binary, quantity binary, _source_file string")
    records = records_from_columns(rows, ["event_id", "quantity"])
    actual = conform(records, SCHEMA, required=("event_id",)).select("event_id", "_raw", "_raw_encoding", "_error")
    assertDataFrameEqual(actual, [
        Row("e1", '{"event_id":"e1","quantity":"2"}', None, None),
        Row(None, json.dumps({"event_id": base64.b64encode(b"e\xff").decode(), "quantity": "Mw=="},
                             separators=(",", ":")), "base64_values", "not_utf8"),
    ])
