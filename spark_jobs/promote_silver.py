"""Silver promotion: bronze -> one standardized, de-duplicated silver table per source, behind quality gates.

Thin job around `spark_jobs.silver` and `expectations`. Per source, in `PROMOTION_ORDER`:

1. Read only the bronze rows ingested since the last promotion: `ops.silver_progress` holds, per bronze
   table (`bronze.<source>` and, when it exists, `bronze.<source>_stream`), the `_ingested_at`
   watermark promoted up to; rows above it are read from one pinned bronze version. Stream rows
   younger than `STREAM_GRACE` are left for the next run, because a micro-batch stamps
   `_ingested_at` before it commits.
2. Record schema drift (`ops.schema_drift`, warning log), standardize, keep the latest row per key.
3. Validate the batch once with the source's Great Expectations suite; results to `ops.quality_results`.
   A failed `fail` rule stops this source (nothing written, watermark kept) and, after the other
   sources, the run raises `QualityGateError`. Rows failing a `drop` rule go to `silver.quarantine`.
4. MERGE the rest into `silver.<source>` on its natural key (a newer delivery updates, a new key
   inserts), then advance the watermark. A re-run with nothing new writes nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, DataFrameWriter, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DateType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakehouse.delta import delta_exists, read_delta, table_version
from lakehouse.schemas.landing import SOURCE_SCHEMAS
from lakehouse.schemas.silver import PROMOTION_ORDER, SILVER_KEYS
from lakehouse.settings import Settings, get_settings
from lakehouse.tables import TABLES, Table, table
from spark_jobs.bronze import LINEAGE_COLUMNS
from spark_jobs.silver import (
    References,
    bronze_profile,
    latest_per_key,
    missing_columns,
    quarantine_rows,
    repeated_keys,
    rescued_fields,
    split_by_rules,
    standardize,
)

if TYPE_CHECKING:
    from expectations.gate import QualityGate

log = logging.getLogger(__name__)

# A stream micro-batch stamps `_ingested_at` when it starts and commits seconds later.
STREAM_GRACE = timedelta(seconds=60)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Up to this many keys repeated in one batch, de-duplication broadcasts them and ranks only their rows
# (tens of MB on the driver); beyond, as when a whole history is re-ingested, it sorts the batch.
BROADCAST_KEYS = 1_000_000

PROGRESS_SCHEMA = StructType([
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

QUALITY_RESULTS_SCHEMA = StructType([
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

SCHEMA_DRIFT_SCHEMA = StructType([
    StructField("run_id", StringType(), False),
    StructField("source", StringType(), False),
    StructField("kind", StringType(), False),
    StructField("column", StringType(), False),
    StructField("rows", LongType(), False),
    StructField("first_ingest_date", DateType(), True),
    StructField("detected_at", TimestampType(), False),
])


@dataclass(frozen=True)
class PromotionResult:
    """What one run did for one source; `rows_read` is 0 when nothing new was in bronze."""

    source: str
    rows_read: int = 0
    promoted: int = 0
    quarantined: int = 0
    drift: int = 0
    silver_version: int | None = None


@dataclass(frozen=True)
class _Slice:
    """The new rows of one bronze table: pinned version, the watermark they reach, their `bronze_profile`."""

    bronze_table: str
    version: int
    profile: Row
    frame: DataFrame

    @property
    def rows(self) -> int:
        return self.profile.rows

    @property
    def watermark(self) -> datetime:
        return self.profile.watermark.replace(tzinfo=UTC)


def bronze_tables(source: str) -> list[Table]:
    """The bronze tables a source's silver reads: the batch table and its stream twin, if registered."""
    return [TABLES[name] for name in (f"bronze.{source}", f"bronze.{source}_stream") if name in TABLES]


def _watermarks(spark: SparkSession, settings: Settings) -> dict[str, datetime]:
    location = table("ops.silver_progress").location(settings)
    if not delta_exists(spark, location):
        return {}
    rows = read_delta(spark, location).groupBy("bronze_table").agg(F.max("watermark").alias("w")).collect()
    return {r.bronze_table: r.w.replace(tzinfo=UTC) for r in rows}


def bronze_columns(frame: DataFrame, source: str) -> DataFrame:
    """Declared columns, `_rescued_data` and lineage; a declared column the table lacks comes as null
    (and shows up as schema drift) instead of failing the read."""
    declared = SOURCE_SCHEMAS[source]
    return frame.select(
        *[(F.col(f.name) if f.name in frame.columns else F.lit(None)).cast(f.dataType).alias(f.name)
          for f in declared.fields],
        "_rescued_data", *LINEAGE_COLUMNS)


def _new_rows(spark: SparkSession, settings: Settings, source: str, watermarks: dict[str, datetime],
              started: datetime) -> list[_Slice]:
    slices = []
    for bronze in bronze_tables(source):
        location = bronze.location(settings)
        version = table_version(spark, location)
        if version is None:
            continue
        since = F.lit(watermarks.get(bronze.name, _EPOCH)).cast("timestamp")
        frame = read_delta(spark, location, version).where(F.col("_ingested_at") > since)
        if bronze.name.endswith("_stream"):
            frame = frame.where(F.col("_ingested_at") <= F.lit(started - STREAM_GRACE).cast("timestamp"))
        frame = bronze_columns(frame, source)
        profile = bronze_profile(frame, source, SOURCE_SCHEMAS[source]).first()
        if profile.rows:
            slices.append(_Slice(bronze.name, version, profile, frame))
    return slices


@dataclass
class _OpsRecords:
    """Rows for the ops tables, written once per run (a Delta commit costs seconds on a busy machine)."""

    drift: list[tuple] = field(default_factory=list)
    quality: list[tuple] = field(default_factory=list)
    progress: list[tuple] = field(default_factory=list)

    def flush(self, spark: SparkSession, settings: Settings) -> None:
        for rows, schema, name in ((self.drift, SCHEMA_DRIFT_SCHEMA, "ops.schema_drift"),
                                   (self.quality, QUALITY_RESULTS_SCHEMA, "ops.quality_results"),
                                   (self.progress, PROGRESS_SCHEMA, "ops.silver_progress")):
            if rows:
                spark.createDataFrame(rows, schema).write.format("delta").mode("append").save(
                    table(name).location(settings))
                rows.clear()


def first_write(rows: DataFrame, partition_by: tuple[str, ...]) -> DataFrameWriter:
    """The writer of a table's first version, partitioned by `partition_by`: one file per partition value.

    Shuffled by partition value before writing, so each partition gets one file instead of a small file
    from every task (thousands, for transactions' zone x date). Delta's optimized write would run a task
    per partition value: 679 tasks of about 1,600 rows for transactions, half as fast. An unpartitioned
    table takes the optimized write: a few full files."""
    if partition_by:
        return rows.repartition(*partition_by).write.partitionBy(*partition_by)
    return rows.write.option("optimizeWrite", "true")


def _merge(spark: SparkSession, settings: Settings, rows: DataFrame, target: Table, keys: tuple[str, ...],
           newer: str | None) -> None:
    """Upsert `rows` into `target` by `keys`; `newer` is the condition under which a match is updated.

    The target's date partition column, when it has one, is restricted to the batch's dates so that
    the MERGE rewrites only those partitions (a late row's old date is among them)."""
    location = target.location(settings)
    if not delta_exists(spark, location):
        first_write(rows, target.partition_by).format("delta").options(**target.creation_options).save(location)
        return
    condition = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
    schema = {f.name: f.dataType for f in rows.schema.fields}
    for column in (c for c in target.partition_by if isinstance(schema.get(c), DateType)):
        days = [r[0] for r in rows.select(column).distinct().collect()]
        listed = ", ".join(f"DATE'{d.isoformat()}'" for d in days if d is not None)
        pruned = [f"t.`{column}` IN ({listed})"] if listed else []
        if None in days:
            pruned.append(f"t.`{column}` IS NULL")
        condition += f" AND ({' OR '.join(pruned)})"
    merge = DeltaTable.forPath(spark, location).alias("t").merge(rows.alias("s"), condition)
    if newer:
        merge = merge.whenMatchedUpdateAll(condition=newer)
    merge.whenNotMatchedInsertAll().execute()


# A newer delivery of a key replaces the silver row: later ingest date, or the same date re-ingested later.
_NEWER = ("s.ingest_date > t.ingest_date OR "
          "(s.ingest_date = t.ingest_date AND s._ingested_at > t._ingested_at)")


def promote_source(spark: SparkSession, settings: Settings, gate: QualityGate, source: str, run_id: str,
                   watermarks: dict[str, datetime], started: datetime, ops: _OpsRecords) -> PromotionResult:
    """Promote the new bronze rows of one source; raises QualityGateError when a `fail` rule fails.

    Drift, rule results and the new watermark are added to `ops`; the watermark only once silver is written.
    """
    from expectations.gate import QualityGateError, gate_failures
    from expectations.rules import Severity, drop_rule_checks
    from expectations.suites import SUITES

    slices = _new_rows(spark, settings, source, watermarks, started)
    if not slices:
        log.info("nothing new", extra={"source": source})
        return PromotionResult(source)
    bronze = slices[0].frame
    for extra in slices[1:]:
        bronze = bronze.unionByName(extra.frame)
    keys = SILVER_KEYS[source]
    standardized = repeated = batch = None
    try:
        now, first_date = datetime.now(UTC), min(s.profile.first_ingest_date for s in slices)
        # The slices' profiles found the missing columns; only rescued fields need a pass over the rows.
        rescued = (rescued_fields(bronze).collect() if any(s.profile.rescued_rows for s in slices) else [])
        drift = ([("new_field", r.column, r.rows) for r in rescued]
                 + [("missing_column", column, rows) for column, rows in missing_columns([s.profile for s in slices])])
        for kind, column, rows in drift:
            log.warning("schema drift", extra={"source": source, "kind": kind, "column": column, "rows": rows})
        ops.drift.extend((run_id, source, kind, column, rows, first_date, now) for kind, column, rows in drift)

        refs = References(fx=_silver(spark, settings, "fx_rates"), zones=_silver(spark, settings, "shipping_zones"))
        standardized = standardize(source, bronze, refs).persist()
        repeated = repeated_keys(standardized, keys).persist()
        # A batch of n rows repeats at most n / 2 keys: only a bigger batch needs to count them.
        if sum(s.rows for s in slices) <= 2 * BROADCAST_KEYS or repeated.count() <= BROADCAST_KEYS:
            # Cheap to recompute from the cached rows for each pass below: no copy of the batch.
            batch = latest_per_key(standardized, keys, repeated)
        else:
            batch = latest_per_key(standardized, keys).persist()
        results = gate.validate(source, batch)
        ops.quality.extend(
            (run_id, f"silver.{r.source}", r.rule.name, r.rule.expectation.__name__,
             json.dumps(dict(r.rule.kwargs), sort_keys=True), r.rule.severity.value, r.success,
             r.unexpected_count, r.element_count, r.validated_at) for r in results)
        failures = gate_failures(results)
        if failures:
            raise QualityGateError(failures)

        kept, dropped = split_by_rules(batch, *drop_rule_checks(SUITES[source]))
        n_quarantined = 0
        # GE counted each drop rule's rows: the quarantine costs a pass over the batch only when one found some.
        if any(r.rule.severity is Severity.DROP and r.unexpected_count != 0 for r in results):
            quarantined = quarantine_rows(dropped, source, keys, run_id).persist()
            n_quarantined = quarantined.count()
            if n_quarantined:  # none when GE could not count a rule (None) and no row fails it
                # Keyed by row and delivery, so a run repeated after a crash adds nothing twice.
                _merge(spark, settings, quarantined, table("silver.quarantine"),
                       ("source", "record_key", "_ingested_at"), newer=None)
            quarantined.unpersist()
        target = table(f"silver.{source}")
        _merge(spark, settings, kept, target, keys, _NEWER)
        # GE counted the batch's rows already; count again only if it could not.
        rows = next((r.element_count for r in results if r.element_count is not None), None) or batch.count()
        promoted = rows - n_quarantined
        promoted_at = datetime.now(UTC)
        ops.progress.extend((source, s.bronze_table, s.version, s.watermark, s.rows, promoted, n_quarantined,
                             run_id, promoted_at) for s in slices)
        return PromotionResult(source, sum(s.rows for s in slices), promoted, n_quarantined, len(drift),
                               table_version(spark, target.location(settings)))
    finally:
        for cached in (batch, repeated, standardized):
            if cached is not None:
                cached.unpersist()


def _silver(spark: SparkSession, settings: Settings, source: str) -> DataFrame | None:
    location = table(f"silver.{source}").location(settings)
    return read_delta(spark, location) if delta_exists(spark, location) else None


def run(spark: SparkSession, settings: Settings, sources: list[str] | None = None,
        run_id: str | None = None) -> list[PromotionResult]:
    """Promote the given sources (default: all) in dependency order; return one result per source.

    Every source is attempted; if a `fail` rule stopped any, QualityGateError lists them all at the end.
    """
    # Great Expectations takes seconds to import: only jobs that validate pay for it, not the CLI.
    from expectations.gate import QualityGate, QualityGateError

    wanted = set(sources or PROMOTION_ORDER)
    unknown = wanted - set(PROMOTION_ORDER)
    if unknown:
        raise ValueError(f"unknown sources {sorted(unknown)}; known: {', '.join(PROMOTION_ORDER)}")
    run_id, started = run_id or uuid.uuid4().hex, datetime.now(UTC)
    gate = QualityGate(settings.state_dir / "data_docs")
    watermarks = _watermarks(spark, settings)
    results, failures, ops = [], [], _OpsRecords()
    ordered = [s for s in PROMOTION_ORDER if s in wanted]
    clock = time.monotonic()
    try:
        for done, source in enumerate(ordered, start=1):
            try:
                result = promote_source(spark, settings, gate, source, run_id, watermarks, started, ops)
            except QualityGateError as error:
                log.error("quality gate failed", extra={"source": source, "failures": str(error)})
                failures.extend(error.failures)
                continue
            results.append(result)
            log.info("promoted", extra={"progress": f"{done}/{len(ordered)}", "source": source,
                                        "rows_read": result.rows_read, "promoted": result.promoted,
                                        "quarantined": result.quarantined, "drift": result.drift,
                                        "elapsed_s": round(time.monotonic() - clock, 1)})
    finally:
        # Also after an unexpected error: what was promoted keeps its watermark, results stay visible.
        ops.flush(spark, settings)
    docs = gate.build_docs()
    if docs:
        log.info("data docs", extra={"index": str(docs)})
    if failures:
        raise QualityGateError(failures)
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", action="append", choices=list(PROMOTION_ORDER),
                        help="promote only this source (repeatable; default: all, in dependency order)")


def main(args: argparse.Namespace) -> int:
    from expectations.gate import QualityGateError
    from lakehouse.spark import get_spark

    settings = get_settings()
    try:
        results = run(get_spark("promote-silver", settings), settings, args.source)
    except QualityGateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for r in results:
        print(f"{r.source:<15} read {r.rows_read:>8}  promoted {r.promoted:>8}  quarantined {r.quarantined:>6}  "
              f"drift {r.drift}")
    return 0
