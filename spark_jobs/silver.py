"""Silver promotion: bronze -> one standardized, de-duplicated silver table per source, behind quality gates.

Thin job around `transforms.standardize` and `expectations`. Per source, in `PROMOTION_ORDER`:

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

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from expectations.gate import QualityGate
from expectations.recorder import quality_rows, quarantine_rows, split_by_rules
from lakehouse import delta
from lakehouse.delta import delta_exists, read_delta, table_version
from lakehouse.quality import QualityGateError, Severity, gate_failures
from lakehouse.schemas.ops import QUALITY_RESULTS, SCHEMA_DRIFT, SILVER_PROGRESS
from lakehouse.settings import Settings
from lakehouse.sources import PROMOTION_ORDER, SOURCES
from lakehouse.tables import TABLES, Table, table
from transforms.records import LINEAGE_COLUMNS
from transforms.standardize import (
    References,
    bronze_profile,
    latest_per_key,
    missing_columns,
    repeated_keys,
    rescued_fields,
    standardize,
)

log = logging.getLogger(__name__)

# A stream micro-batch stamps `_ingested_at` when it starts and commits seconds later.
STREAM_GRACE = timedelta(seconds=60)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Up to this many keys repeated in one batch, de-duplication broadcasts them and ranks only their rows
# (tens of MB on the driver); beyond, as when a whole history is re-ingested, it sorts the batch.
BROADCAST_KEYS = 1_000_000

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


@dataclass(frozen=True)
class _Promoted:
    """How far a bronze table has been promoted: the `_ingested_at` watermark and the bronze version read."""

    watermark: datetime
    bronze_version: int


def _watermarks(spark: SparkSession, settings: Settings) -> dict[str, _Promoted]:
    location = table("ops.silver_progress").location(settings)
    if not delta_exists(spark, location):
        return {}
    rows = read_delta(spark, location).groupBy("bronze_table").agg(
        F.max("watermark").alias("w"), F.max("bronze_version").alias("v")).collect()
    return {r.bronze_table: _Promoted(r.w.replace(tzinfo=UTC), r.v) for r in rows}


def bronze_columns(frame: DataFrame, source: str) -> DataFrame:
    """Declared columns, `_rescued_data` and lineage; a declared column the table lacks comes as null
    (and shows up as schema drift) instead of failing the read."""
    declared = SOURCES[source].landing
    return frame.select(
        *[(F.col(f.name) if f.name in frame.columns else F.lit(None)).cast(f.dataType).alias(f.name)
          for f in declared.fields],
        "_rescued_data", *LINEAGE_COLUMNS)


def _new_rows(spark: SparkSession, settings: Settings, source: str, watermarks: dict[str, _Promoted],
              started: datetime) -> list[_Slice]:
    slices = []
    for bronze in bronze_tables(source):
        location = bronze.location(settings)
        version = table_version(spark, location)
        promoted = watermarks.get(bronze.name)
        stream = bronze.name.endswith("_stream")
        # A batch table not written since its last promotion has nothing new: its version says so, without a
        # pass over its rows. A stream table may still hold rows that were too young to promote last time.
        if version is None or (not stream and promoted is not None and promoted.bronze_version == version):
            continue
        since = F.lit(promoted.watermark if promoted else _EPOCH).cast("timestamp")
        frame = read_delta(spark, location, version).where(F.col("_ingested_at") > since)
        if stream:
            frame = frame.where(F.col("_ingested_at") <= F.lit(started - STREAM_GRACE).cast("timestamp"))
        frame = bronze_columns(frame, source)
        profile = bronze_profile(frame, source, SOURCES[source].landing).first()
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
        for rows, schema, name in ((self.drift, SCHEMA_DRIFT, "ops.schema_drift"),
                                   (self.quality, QUALITY_RESULTS, "ops.quality_results"),
                                   (self.progress, SILVER_PROGRESS, "ops.silver_progress")):
            delta.append_rows(spark, rows, schema, table(name), settings)
            rows.clear()


# The lineage a silver.quarantine row keeps of its bronze row.
LINEAGE_QUARANTINED = ("_batch_id", "_ingested_at", "ingest_date")
# A newer delivery of a key replaces the silver row: later ingest date, or the same date re-ingested later.
_NEWER = ("s.ingest_date > t.ingest_date OR "
          "(s.ingest_date = t.ingest_date AND s._ingested_at > t._ingested_at)")


def promote_source(spark: SparkSession, settings: Settings, gate: QualityGate, source: str, run_id: str,
                   watermarks: dict[str, _Promoted], started: datetime, ops: _OpsRecords) -> PromotionResult:
    """Promote the new bronze rows of one source; raises QualityGateError when a `fail` rule fails.

    Drift, rule results and the new watermark are added to `ops`; the watermark only once silver is written.
    """
    slices = _new_rows(spark, settings, source, watermarks, started)
    if not slices:
        log.info("nothing new", extra={"source": source})
        return PromotionResult(source)
    bronze = slices[0].frame
    for extra in slices[1:]:
        bronze = bronze.unionByName(extra.frame)
    keys = SOURCES[source].key
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
        ops.quality.extend(quality_rows(run_id, "silver", results))
        failures = gate_failures(results)
        if failures:
            raise QualityGateError(failures)

        kept, dropped = split_by_rules(batch, SOURCES[source].suite)
        n_quarantined = 0
        # GE counted each drop rule's rows: the quarantine costs a pass over the batch only when one found some.
        if any(r.rule.severity is Severity.DROP and r.unexpected_count != 0 for r in results):
            quarantined = quarantine_rows(dropped, ("source", source), keys, run_id, LINEAGE_QUARANTINED).persist()
            n_quarantined = quarantined.count()
            if n_quarantined:  # none when GE could not count a rule (None) and no row fails it
                # Keyed by row and delivery, so a run repeated after a crash adds nothing twice.
                delta.merge(quarantined, table("silver.quarantine"), settings,
                            ("source", "record_key", "_ingested_at"), newer=None)
            quarantined.unpersist()
        target = table(f"silver.{source}")
        delta.merge(kept, target, settings, keys, _NEWER)
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


def step(spark: SparkSession, settings: Settings, source: list[str] | None = None) -> str:
    """The pipeline step (orchestration.steps): promote what is new, summarised in one line."""
    results = run(spark, settings, source)
    return (f"{sum(r.promoted for r in results)} rows promoted from {sum(r.rows_read for r in results)} new bronze "
            f"rows, {sum(r.quarantined for r in results)} quarantined, {sum(r.drift for r in results)} drift findings")
