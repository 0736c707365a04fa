"""Monitoring tables (spark_jobs/monitor.py; docs/monitoring.md): the metrics of each run and the alert log."""

from __future__ import annotations

from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType, TimestampType

# One row per monitoring run, check, subject and metric (and quality run, for the quality history):
# the value measured, the rule that judged it and the outcome.
MONITORING_METRICS = StructType([
    StructField("run_id", StringType(), False),
    StructField("computed_at", TimestampType(), False),
    StructField("check", StringType(), False),
    StructField("subject", StringType(), False),
    StructField("metric", StringType(), False),
    StructField("value", DoubleType(), True),
    StructField("observed_at", TimestampType(), True),
    StructField("rule", StringType(), True),
    StructField("severity", StringType(), True),
    StructField("threshold", DoubleType(), True),
    StructField("status", StringType(), False),
    StructField("detail", StringType(), True),
])

# One row per alert event sent (or attempted) to the webhook: PagerDuty Events v2 body and outcome.
ALERTS = StructType([
    StructField("run_id", StringType(), False),
    StructField("sent_at", TimestampType(), False),
    StructField("dedup_key", StringType(), False),
    StructField("rule", StringType(), False),
    StructField("subject", StringType(), False),
    StructField("action", StringType(), False),
    StructField("severity", StringType(), False),
    StructField("summary", StringType(), False),
    StructField("value", DoubleType(), True),
    StructField("threshold", DoubleType(), True),
    StructField("outcome", StringType(), False),
    StructField("http_status", IntegerType(), True),
    StructField("error", StringType(), True),
    StructField("payload", StringType(), False),
])
