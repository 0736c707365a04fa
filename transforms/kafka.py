"""Pure transforms from Kafka messages to bronze rows and dead letters, on top of `transforms.records`.

A Kafka message becomes a record of `transforms.records` (the same JSON parsing and `conform` as the
batch backfill, so a message is valid in the stream exactly when the same line would be valid in a
landing file). Grain everywhere: one row per Kafka message.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BinaryType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakehouse.streams import StreamSource
from transforms.records import (
    bronze_rows,
    conform,
    quarantine_rows,
    records_from_json_lines,
    utf8_or_base64,
    with_lineage,
)
from transforms.standardize import canonical_sku

# The rows Spark's Kafka source yields (headers not requested).
KAFKA_SOURCE_SCHEMA = StructType([
    StructField("key", BinaryType()), StructField("value", BinaryType()), StructField("topic", StringType()),
    StructField("partition", IntegerType()), StructField("offset", LongType()),
    StructField("timestamp", TimestampType()), StructField("timestampType", IntegerType()),
])


# The Kafka coordinates of a message, carried through `conform` as one struct column.
_KAFKA = "_kafka"
# How far a message's event time may run ahead of its Kafka timestamp (clocks of senders drift).
MAX_CLOCK_SKEW = timedelta(minutes=5)


def kafka_records(messages: DataFrame) -> DataFrame:
    """Kafka source rows (key, value, topic, partition, offset, timestamp) -> records. `_source_file` is
    `kafka://<topic>/<partition>/<offset>`, the stream's counterpart of the batch rows' file path; the
    coordinates ride along in `_kafka` until `with_kafka_columns` unpacks them. A key that is not UTF-8
    is kept as `base64:` and its bytes in base64."""
    key, key_encoding = utf8_or_base64(F.col("key"))
    return records_from_json_lines(messages.select(
        "value",
        F.format_string("kafka://%s/%d/%d", "topic", "partition", "offset").alias("_source_file"),
        F.struct("topic", "partition", "offset", "timestamp",
                 F.when(key_encoding.isNull(), key).otherwise(F.concat(F.lit("base64:"), key)).alias("key"))
        .alias(_KAFKA),
    ), passthrough=(_KAFKA,))


def conformed_messages(messages: DataFrame, source: StreamSource, batch_id: str,
                       ingested_at: datetime) -> DataFrame:
    """Kafka rows -> conformed records with lineage; the ingestion date is the Kafka timestamp's date
    (UTC), so a replayed message lands in the same partition."""
    conformed = conform(kafka_records(messages), source.schema, source.required, passthrough=(_KAFKA,))
    return with_lineage(conformed, F.to_date(f"{_KAFKA}.timestamp"), batch_id, ingested_at)


def message_checks(source: StreamSource, known_skus: list[str] | None) -> list[tuple[str, Column]]:
    """(name, true for a message that fails it) of each check a conformed message of `source` must pass
    beyond its schema: the source's message rules, an event time no later than the Kafka timestamp plus
    `MAX_CLOCK_SKEW`, and a SKU of `known_skus` (not checked while there is no catalogue: None).

    The clock is the message's own Kafka timestamp, not the batch's, so that a replayed batch splits the
    same way."""
    checks = [(rule.name, rule.unexpected()) for rule in source.rules]
    if source.event_time:
        event = F.col(source.event_time)
        latest = F.col(f"{_KAFKA}.timestamp") + F.expr(f"INTERVAL {int(MAX_CLOCK_SKEW.total_seconds())} SECONDS")
        checks.append((f"{source.event_time}_in_future", event.isNotNull() & (event > latest)))
    if source.sku_known and known_skus is not None:
        checks.append(("sku_unknown", ~F.coalesce(canonical_sku(F.col("sku")).isin(known_skus), F.lit(False))))
    return checks


def with_rejections(conformed: DataFrame, checks: list[tuple[str, Column]]) -> DataFrame:
    """Conformed messages; one that conformed but fails checks gets `_error` `rejected: <names>`, so it goes to
    the dead letters instead of bronze. Grain: one row per message."""
    if not checks:
        return conformed
    failed = F.concat_ws(", ", *[F.when(fails, F.lit(name)) for name, fails in checks])
    return conformed.withColumn("_error", F.when(F.col("_error").isNull() & (failed != ""),
                                                 F.concat(F.lit("rejected: "), failed)).otherwise(F.col("_error")))


def with_kafka_columns(rows: DataFrame) -> DataFrame:
    """Unpack the Kafka coordinates into `_kafka_*` columns."""
    kafka = F.col(_KAFKA)
    return rows.withColumns({
        "_kafka_topic": kafka["topic"],
        "_kafka_partition": kafka["partition"],
        "_kafka_offset": kafka["offset"],
        "_kafka_timestamp": kafka["timestamp"],
        "_kafka_key": kafka["key"],
    }).drop(_KAFKA)


def stream_bronze_rows(conformed: DataFrame, source: StreamSource) -> DataFrame:
    """The valid messages: declared columns, `_rescued_data`, lineage and Kafka coordinates."""
    return with_kafka_columns(bronze_rows(conformed, source.schema, passthrough=(_KAFKA,)))


def dead_letter_rows(conformed: DataFrame, source: StreamSource) -> DataFrame:
    """The messages that could not be conformed: raw payload, reason, lineage and Kafka coordinates."""
    return with_kafka_columns(quarantine_rows(conformed, source.name, passthrough=(_KAFKA,)))
