"""Hand-made bronze rows for the silver tests: declared columns from dicts, then `_rescued_data` and lineage."""

from datetime import date, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructField, StructType

from lakehouse.schemas.silver import LINEAGE
from lakehouse.settings import Settings
from lakehouse.sources import INGEST_DATE_PARTITIONS, LANDING_SOURCES
from lakehouse.tables import table


def bronze_frame(spark: SparkSession, source: str,
                 rows: list[tuple[dict, str | None, datetime, date]]) -> DataFrame:
    """Bronze rows of `source` from (declared values, _rescued_data, _ingested_at, ingest_date)."""
    declared = LANDING_SOURCES[source].landing
    schema = StructType([*declared.fields, *[StructField(n, t) for n, t in LINEAGE]])
    return spark.createDataFrame([(*[values.get(c) for c in declared.fieldNames()], rescued, f"file:{day}",
                                   f"batch-{at:%H%M}", at, day) for values, rescued, at, day in rows], schema)


def append_bronze(spark: SparkSession, settings: Settings, source: str,
                  rows: list[tuple[dict, str | None, datetime, date]]) -> None:
    """Append rows to `bronze.<source>` as batch ingestion lays them out (ingest date partitions)."""
    frame = bronze_frame(spark, source, rows).withColumns({
        "ingest_year": F.year("ingest_date"), "ingest_month": F.month("ingest_date"),
        "ingest_day": F.dayofmonth("ingest_date")})
    (frame.write.format("delta").mode("append").partitionBy(*INGEST_DATE_PARTITIONS)
     .save(table(f"bronze.{source}").location(settings)))
