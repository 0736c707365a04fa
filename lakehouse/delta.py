"""Storage I/O over Delta tables addressed by location (local folder or s3a://): the one table-write layer.

Every job writes through `create`, `append`, `append_rows`, `replace` and `merge`, which apply the table
registry's partitioning and, when a write creates a table, its properties (`Table.creation_options`), and keep the
table registered in the catalog by name (`lakehouse.catalog`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, DataFrameWriter, SparkSession
from pyspark.sql.types import DateType, StructType

from lakehouse.catalog import register
from lakehouse.settings import Settings
from lakehouse.tables import TABLES, Table


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


def _writer(frame: DataFrame, target: Table, mode: str) -> DataFrameWriter:
    return frame.write.format("delta").mode(mode).partitionBy(*target.partition_by)


def create(frame: DataFrame, target: Table, settings: Settings) -> None:
    """Write a table's first version, with its properties: one file per partition value.

    Shuffled by partition value before writing, so each partition gets one file instead of a small file
    from every task (thousands, for transactions' zone x date). Delta's optimized write would run a task
    per partition value: 679 tasks of about 1,600 rows for transactions, half as fast. An unpartitioned
    table takes the optimized write: a few full files."""
    if target.partition_by:
        writer = _writer(frame.repartition(*target.partition_by), target, "append")
    else:
        writer = _writer(frame, target, "append").option("optimizeWrite", "true")
    writer.options(**target.creation_options).save(target.location(settings))
    register(frame.sparkSession, target, settings)


def append(frame: DataFrame, target: Table, settings: Settings, metadata: dict[str, Any] | None = None) -> None:
    """Append `frame`; `metadata` goes into the commit's `userMetadata` (as JSON). A column the declared schema
    gained since the table was created is added to it (a type change still fails)."""
    writer = _writer(frame, target, "append").option("mergeSchema", "true")
    if metadata is not None:
        writer = writer.option("userMetadata", json.dumps(metadata))
    writer.save(target.location(settings))
    register(frame.sparkSession, target, settings)


def records(frame: pd.DataFrame, schema: StructType) -> list[tuple]:
    """A pandas frame's rows in the schema's column order, as plain Python values for `append_rows`: NaN
    and NaT as None, pandas times as datetimes (Spark wants both)."""
    def plain(value):
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            return None
        if isinstance(value, pd.Timestamp):
            return value.to_pydatetime()
        return value.item() if isinstance(value, np.generic) else value

    return [tuple(plain(v) for v in row) for row in frame[schema.fieldNames()].itertuples(index=False)]


def append_rows(spark: SparkSession, rows: Sequence[tuple], schema: StructType, target: Table,
                settings: Settings) -> None:
    """Append driver-side rows (run logs, results) in one commit; nothing when there are none."""
    if rows:
        append(spark.createDataFrame(list(rows), schema), target, settings)


def replace(frame: DataFrame, target: Table, settings: Settings, where: str | None = None) -> None:
    """Overwrite the table, or with `where` only the rows that match it (`replaceWhere`), in one commit. A
    column the table does not have yet is added (`mergeSchema`), as `append` does."""
    writer = _writer(frame, target, "overwrite").option("mergeSchema", "true")
    if where is not None:
        writer = writer.option("replaceWhere", where)
    writer.save(target.location(settings))
    register(frame.sparkSession, target, settings)


def merge(rows: DataFrame, target: Table, settings: Settings, keys: tuple[str, ...], newer: str | None,
          scope: str | None = None) -> None:
    """Upsert `rows` into `target` by `keys` (`create` when there is no table yet); `newer` is the condition
    under which a match is updated (None: matches are kept as they are). `scope`, a condition on the
    target (`t.`), confines the MERGE to the partitions it names, so that writers of other partitions do
    not conflict with it.

    The target's date partition column, when it has one, is restricted to the batch's dates so that
    the MERGE rewrites only those partitions (a late row's old date is among them)."""
    spark, location = rows.sparkSession, target.location(settings)
    if not delta_exists(spark, location):
        create(rows, target, settings)
        return
    condition = " AND ".join([f"t.`{k}` = s.`{k}`" for k in keys] + ([f"({scope})"] if scope else []))
    schema = {f.name: f.dataType for f in rows.schema.fields}
    for column in (c for c in target.partition_by if isinstance(schema.get(c), DateType)):
        days = [r[0] for r in rows.select(column).distinct().collect()]
        listed = ", ".join(f"DATE'{d.isoformat()}'" for d in days if d is not None)
        pruned = [f"t.`{column}` IN ({listed})"] if listed else []
        if None in days:
            pruned.append(f"t.`{column}` IS NULL")
        condition += f" AND ({' OR '.join(pruned)})"
    # Declared schemas grow by new columns (the decision log's, a source's); the MERGE adds them to the table.
    merger = DeltaTable.forPath(spark, location).alias("t").merge(rows.alias("s"), condition).withSchemaEvolution()
    if newer:
        merger = merger.whenMatchedUpdateAll(condition=newer)
    merger.whenNotMatchedInsertAll().execute()
    register(spark, target, settings)


def register_existing(spark: SparkSession, settings: Settings) -> list[str]:
    """Register every table of the registry that exists in the lake (one built before the catalog, or after
    another lake's tables took the names); returns their names."""
    names = []
    for target in TABLES.values():
        if delta_exists(spark, target.location(settings)):
            register(spark, target, settings, recheck=True)
            names.append(target.name)
    return names


def delete(spark: SparkSession, target: Table, settings: Settings, where: str) -> None:
    """Delete the rows that match `where` (nothing when there is no table yet)."""
    location = target.location(settings)
    if delta_exists(spark, location):
        DeltaTable.forPath(spark, location).delete(where)
