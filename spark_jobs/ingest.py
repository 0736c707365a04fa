"""Batch ingestion: landing zone -> one bronze Delta table per source, corrupt records to quarantine.

Thin job around `transforms.records`. A (source, ingest date) is pending when the ingest log has no
entry for it, or when the folder's files changed since; a run ingests every pending date of a
source in one read and one write per table, a few sources at a time, and logs them at the end.
Writes replace exactly the ingest dates of the run (`replaceWhere`), so a run that died after
writing bronze but before logging re-does those dates without duplicating them, and a re-run over
logged dates changes nothing.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from lakehouse import delta
from lakehouse.delta import delta_exists, read_delta
from lakehouse.schemas.ops import INGEST_LOG
from lakehouse.settings import Settings
from lakehouse.sources import LANDING_SOURCES
from lakehouse.tables import table
from transforms.rate_sheets import FILE_CHECKS
from transforms.records import (
    bronze_rows,
    conform,
    quarantine_rows,
    records_from_columns,
    records_from_json_lines,
    with_lineage,
)

log = logging.getLogger(__name__)

_DATE_FOLDER = re.compile(r"^ingest_date=(\d{4}-\d{2}-\d{2})$")
_CORRUPT = "_corrupt_record"
PARALLEL_SOURCES = 3

@dataclass(frozen=True)
class LandingBatch:
    """The files of one source for one ingestion date."""

    source: str
    ingest_date: date
    files: tuple[Path, ...]

    @property
    def fingerprint(self) -> str:
        """Names and sizes of the files: a file added, removed or re-sent with other content changes it."""
        return ",".join(f"{p.name}:{p.stat().st_size}" for p in sorted(self.files))


@dataclass(frozen=True)
class SourceResult:
    """What one run ingested of one source: per date, the file list, good rows and quarantined rows."""

    source: str
    per_date: tuple[tuple[date, str, int, int], ...]

    @property
    def dates(self) -> int:
        return len(self.per_date)

    @property
    def rows(self) -> int:
        return sum(rows for _, _, rows, _ in self.per_date)

    @property
    def quarantined(self) -> int:
        return sum(bad for _, _, _, bad in self.per_date)


def landing_batches(landing_dir: Path, sources: list[str], only_date: date | None = None) -> list[LandingBatch]:
    """Every (source, ingest date) folder of the landing zone with its data files, oldest first."""
    batches = []
    for source in sources:
        for folder in sorted((landing_dir / source).glob("ingest_date=*")):
            match = _DATE_FOLDER.match(folder.name)
            if not match:
                continue
            day = date.fromisoformat(match.group(1))
            files = tuple(sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith((".", "_"))))
            if files and (only_date is None or day == only_date):
                batches.append(LandingBatch(source, day, files))
    return batches


def logged_fingerprints(spark: SparkSession, settings: Settings) -> dict[tuple[str, date], str]:
    """The file list last ingested for each (source, ingest date)."""
    location = table("ops.ingest_log").location(settings)
    if not delta_exists(spark, location):
        return {}
    latest = (read_delta(spark, location)
              .groupBy("source", "ingest_date")
              .agg(F.max_by("files", "ingested_at").alias("files"))
              .collect())
    return {(row.source, row.ingest_date): row.files for row in latest}


def read_records(spark: SparkSession, source: str, files: list[Path]) -> DataFrame:
    """Read landing files of one source as records (see `transforms.records`). Nothing is inferred."""
    paths = [str(p) for p in files]
    fmt = LANDING_SOURCES[source].landing_format
    if fmt == "json":
        lines = spark.read.text(paths).select("value", F.col("_metadata.file_path").alias("_source_file"))
        return records_from_json_lines(lines)
    groups: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for path in paths:
        groups[_file_columns(fmt, path)].append(path)
    frames = []
    for columns, group in groups.items():
        if fmt == "csv":
            # Each file is read with its own header as all-text columns, so a column that appears
            # mid-history is kept (then rescued) instead of shifting the others.
            text_schema = StructType([StructField(c, StringType()) for c in (*columns, _CORRUPT)])
            rows = (spark.read.schema(text_schema)
                    .options(header=True, mode="PERMISSIVE", columnNameOfCorruptRecord=_CORRUPT)
                    .csv(group))
            corrupt = _CORRUPT
        else:
            rows, corrupt = spark.read.parquet(*group), None
        rows = rows.withColumn("_source_file", F.col("_metadata.file_path"))
        frames.append(records_from_columns(rows, list(columns), corrupt))
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def _file_columns(fmt: str, path: str) -> tuple[str, ...]:
    if fmt == "parquet":
        return tuple(pq.read_schema(path).names)
    with open(path, encoding="utf-8") as handle:
        return tuple(name.strip() for name in handle.readline().rstrip("\r\n").split(","))


def refuse_bad_files(spark: SparkSession, conformed: DataFrame, columns: list[str], check) -> DataFrame:
    """Files checked whole (`transforms.rate_sheets.FILE_CHECKS`): every record of a file with a defect gets
    the file's reasons before its own (`file_refused: ...`), so the file goes to quarantine whole. The files are
    small (a carrier's rate sheet): checked in pandas on the driver."""
    frame = conformed.select("_source_file", *columns, "_error").toPandas()
    reasons = [(name, "file_refused: " + "; ".join(defects))
               for name, rows in frame.groupby("_source_file", sort=True) if (defects := check(rows))]
    if not reasons:
        return conformed
    log.warning("files refused", extra={"files": {name.rsplit("/", 2)[-2] + "/" + name.rsplit("/", 1)[-1]: reason
                                                  for name, reason in reasons}})
    refused = spark.createDataFrame(reasons, "_source_file string, _file_error string")
    return (conformed.join(F.broadcast(refused), "_source_file", "left")
            .withColumn("_error", F.concat_ws("; ", "_file_error", "_error")).drop("_file_error")
            .withColumn("_error", F.when(F.col("_error") != "", F.col("_error"))))


def ingest_source(spark: SparkSession, settings: Settings, source: str, batches: list[LandingBatch],
                  batch_id: str, ingested_at: datetime, shared_table_lock: threading.Lock) -> SourceResult:
    """Ingest the given dates of one source into its bronze table and the quarantine; count per date."""
    schema = LANDING_SOURCES[source].landing
    files = [f for b in batches for f in b.files]
    ingest_date = F.to_date(F.regexp_extract("_source_file", r"ingest_date=(\d{4}-\d{2}-\d{2})", 1))
    conformed = with_lineage(conform(read_records(spark, source, files), schema, LANDING_SOURCES[source].key),
                             ingest_date, batch_id, ingested_at)
    if source in FILE_CHECKS:
        conformed = refuse_bad_files(spark, conformed, schema.fieldNames(), FILE_CHECKS[source])
    conformed = conformed.persist()
    try:
        dates = ", ".join(f"'{b.ingest_date.isoformat()}'" for b in batches)
        delta.replace(bronze_rows(conformed, schema), table(f"bronze.{source}"), settings,
                      f"ingest_date IN ({dates})")
        # Sources run in parallel threads and the quarantine is one table: one writer at a time.
        with shared_table_lock:
            delta.replace(quarantine_rows(conformed, source), table("bronze.quarantine"), settings,
                          f"source = '{source}' AND ingest_date IN ({dates})")
        counts = {(row.ingest_date, row.good): row["count"] for row in
                  conformed.groupBy("ingest_date", F.col("_error").isNull().alias("good")).count().collect()}
    finally:
        conformed.unpersist()
    return SourceResult(source, tuple(
        (b.ingest_date, b.fingerprint, counts.get((b.ingest_date, True), 0), counts.get((b.ingest_date, False), 0))
        for b in batches))


def run(spark: SparkSession, settings: Settings, sources: list[str], only_date: date | None = None,
        landing_dir: Path | None = None) -> list[SourceResult]:
    """Ingest every pending (source, date), then log them; return what each source added, by source name."""
    logged = logged_fingerprints(spark, settings)
    pending = [b for b in landing_batches(landing_dir or settings.landing_dir, sources, only_date)
               if logged.get((b.source, b.ingest_date)) != b.fingerprint]
    by_source: dict[str, list[LandingBatch]] = defaultdict(list)
    for batch in pending:
        by_source[batch.source].append(batch)
    if not by_source:
        log.info("nothing pending", extra={"sources": sources})
        return []

    batch_id, ingested_at, lock = uuid.uuid4().hex, datetime.now(UTC), threading.Lock()
    started = time.monotonic()
    results = []
    # Small sources cost mostly driver-side Delta commits; threads overlap them with the big sources' scans.
    with ThreadPoolExecutor(max_workers=PARALLEL_SOURCES, thread_name_prefix="ingest") as pool:
        futures = {pool.submit(ingest_source, spark, settings, source, batches, batch_id, ingested_at, lock): source
                   for source, batches in by_source.items()}
        for done, future in enumerate(as_completed(futures), start=1):
            result = future.result()
            results.append(result)
            log.info("ingested", extra={"progress": f"{done}/{len(futures)}", "source": result.source,
                                        "dates": result.dates, "rows": result.rows,
                                        "quarantined": result.quarantined,
                                        "elapsed_s": round(time.monotonic() - started, 1)})
    entries = [(r.source, day, files, rows, bad, batch_id, ingested_at) for r in results
               for day, files, rows, bad in r.per_date]
    delta.append_rows(spark, entries, INGEST_LOG, table("ops.ingest_log"), settings)
    return sorted(results, key=lambda r: r.source)


def step(spark: SparkSession, settings: Settings, source: list[str] | None = None, date: date | None = None,
         landing: Path | None = None) -> str:
    """The pipeline step (orchestration.steps): ingest what is pending, summarised in one line."""
    results = run(spark, settings, source or sorted(LANDING_SOURCES), date, landing)
    return (f"{sum(r.rows for r in results)} rows from {sum(r.dates for r in results)} source-dates, "
            f"{sum(r.quarantined for r in results)} quarantined")
