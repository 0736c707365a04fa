"""The experiment readout table (spark_jobs/readout.py; docs/experiments.md), read by monitoring."""

from __future__ import annotations

from pyspark.sql.types import BooleanType, DoubleType, LongType, StringType, StructField, StructType, TimestampType

# One row per readout run, experiment, metric and variant. The control's lift, interval and p-value
# are null; srm_p_value (sample-ratio mismatch of the whole experiment) repeats on every row of a run.
EXPERIMENT_READOUT = StructType([
    StructField("readout_id", StringType(), False),
    StructField("computed_at", TimestampType(), False),
    StructField("experiment", StringType(), False),
    StructField("metric", StringType(), False),
    StructField("variant", StringType(), False),
    StructField("is_control", BooleanType(), False),
    StructField("visitors", LongType(), False),
    StructField("value", DoubleType(), True),
    StructField("lift", DoubleType(), True),
    StructField("ci_low", DoubleType(), True),
    StructField("ci_high", DoubleType(), True),
    StructField("p_value", DoubleType(), True),
    StructField("srm_p_value", DoubleType(), True),
])
