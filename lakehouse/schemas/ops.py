"""Schemas of the run logs in the `ops` layer: what each job did, one row per unit of work."""

from __future__ import annotations

from pyspark.sql.types import (
    BooleanType,
    DateType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

# ops.ingest_log: one row per (source, ingest date) and run that ingested it.
INGEST_LOG = StructType([
    StructField("source", StringType(), False),
    StructField("ingest_date", DateType(), False),
    StructField("files", StringType(), False),
    StructField("rows", LongType(), False),
    StructField("quarantined", LongType(), False),
    StructField("batch_id", StringType(), False),
    StructField("ingested_at", TimestampType(), False),
])

# ops.silver_progress: one row per bronze table and promotion run.
SILVER_PROGRESS = StructType([
    StructField("source", StringType(), False),
    StructField("bronze_table", StringType(), False),
    StructField("bronze_version", LongType(), False),
    StructField("watermark", TimestampType(), False),
    StructField("rows_read", LongType(), False),
    StructField("promoted", LongType(), False),
    StructField("quarantined", LongType(), False),
    StructField("run_id", StringType(), False),
    StructField("promoted_at", TimestampType(), False),
])

# ops.quality_results: one row per quality rule and validated batch, silver and gold alike.
QUALITY_RESULTS = StructType([
    StructField("run_id", StringType(), False),
    StructField("table", StringType(), False),
    StructField("rule", StringType(), False),
    StructField("expectation", StringType(), False),
    StructField("kwargs", StringType(), False),
    StructField("severity", StringType(), False),
    StructField("success", BooleanType(), False),
    StructField("unexpected_count", LongType(), True),
    StructField("element_count", LongType(), True),
    StructField("validated_at", TimestampType(), False),
])

# ops.schema_drift: one row per schema change seen in a promotion batch.
SCHEMA_DRIFT = StructType([
    StructField("run_id", StringType(), False),
    StructField("source", StringType(), False),
    StructField("kind", StringType(), False),
    StructField("column", StringType(), False),
    StructField("rows", LongType(), False),
    StructField("first_ingest_date", DateType(), True),
    StructField("detected_at", TimestampType(), False),
])

# ops.gold_progress: one row per silver table and gold build.
GOLD_PROGRESS = StructType([
    StructField("run_id", StringType(), False),
    StructField("silver_table", StringType(), False),
    StructField("silver_version", LongType(), False),
    StructField("built_at", TimestampType(), False),
])
