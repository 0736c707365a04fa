"""Small helpers over Delta tables addressed by location (local folder or s3a://)."""

from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession


def delta_exists(spark: SparkSession, location: str) -> bool:
    return DeltaTable.isDeltaTable(spark, location)


def read_delta(spark: SparkSession, location: str, version: int | None = None) -> DataFrame:
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(location)


def table_version(spark: SparkSession, location: str) -> int | None:
    """The latest committed version, or None when there is no table yet."""
    if not delta_exists(spark, location):
        return None
    return DeltaTable.forPath(spark, location).history(1).collect()[0]["version"]
