"""Structured Streaming job: Kafka topics -> `bronze.<source>_stream` and `bronze.dead_letter`, exactly once.

Thin job around `transforms.kafka`. One query per source, each with its checkpoint under
`settings.checkpoints_dir`. Every micro-batch is written by `foreachBatch` to both tables, each
commit with `userMetadata` `{"query_id", "batch"}`. Spark replays only a query's unfinished batch
after a crash (same id, same offsets); before writing it again, the writer looks for that commit in
each table (`streaming.checkpoints.batch_committed`) and skips a write that already happened, so
nothing is lost or duplicated. Bad messages go to the dead-letter table; the query never fails on data.
The driver (`main`) runs the streaming features' queries too (`streaming.features`), in the same JVM.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

from lakehouse import delta
from lakehouse.delta import delta_exists, read_delta
from lakehouse.health import heartbeat_file, kafka_answers
from lakehouse.kafka import ensure_topics, topic_partitions
from lakehouse.log import configure_logging
from lakehouse.settings import get_settings
from lakehouse.spark import get_spark
from lakehouse.streams import DEAD_LETTER, STREAMED
from lakehouse.tables import table
from streaming.checkpoints import (
    CheckpointError,
    batch_committed,
    checkpoint_folder,
    exclusive_checkpoints,
    move_aside,
    resume_offsets,
    unfinished_batch,
    verify_checkpoint,
)
from streaming.features import Starter, feature_starters
from transforms.kafka import (
    KAFKA_SOURCE_SCHEMA,
    conformed_messages,
    dead_letter_rows,
    message_checks,
    stream_bronze_rows,
    with_rejections,
)

log = logging.getLogger(__name__)

# Spark sets this local property on the thread that runs a query's micro-batches.
QUERY_ID_PROPERTY = "sql.streaming.queryId"
# How often a writer that checks SKUs reads the catalogue again (new launches become known).
CATALOGUE_REFRESH_S = 60.0
# Failed queries restarted per run before the job gives up (see `supervise`).
MAX_RESTARTS = 10


@dataclass(frozen=True)
class StreamOptions:
    """How the queries read and trigger; `sink="noop"` runs the same work without writing (benchmarks).
    The job's defaults for `interval` and `max_offsets_per_trigger` come from the settings."""

    interval: str
    max_offsets_per_trigger: int | None
    trigger: Literal["processing", "available-now"] = "processing"
    starting_offsets: str = "earliest"
    reset_checkpoint: bool = False
    sink: Literal["delta", "noop"] = "delta"


class BronzeBatchWriter:
    """The `foreachBatch` function of one source: conform, then write bronze and dead letters.

    `unfinished` is the batch the query runs again after a crash (from its checkpoint): only that
    batch's writes are looked up, every other batch is new. Delta's own idempotent-writer options
    (`txnAppId`/`txnVersion`) would look the transaction up before every write, and Delta 4.x
    rebuilds the table's whole state for that (three Spark jobs, about 1.5 s per batch and table).
    """

    def __init__(self, settings, source, sink: str, unfinished=None):
        self.settings, self.source, self.sink, self.unfinished = settings, source, sink, unfinished
        self._catalogue: list[str] | None = None
        self._catalogue_read_at = -CATALOGUE_REFRESH_S

    def known_skus(self, spark) -> list[str] | None:
        """The catalogue's SKUs (silver.products), read again every CATALOGUE_REFRESH_S; None without one."""
        if not self.source.sku_known:
            return None
        if time.monotonic() - self._catalogue_read_at >= CATALOGUE_REFRESH_S:
            location = table("silver.products").location(self.settings)
            self._catalogue = ([r.sku for r in read_delta(spark, location).select("sku").distinct().collect()]
                               if delta_exists(spark, location) else None)
            self._catalogue_read_at = time.monotonic()
            if self._catalogue is None:
                log.warning("no catalogue yet: SKUs of streamed messages are not checked",
                            extra={"source": self.source.name})
        return self._catalogue

    def __call__(self, messages, batch_id: int) -> None:
        from pyspark.sql import functions as F

        query_id = messages.sparkSession.sparkContext.getLocalProperty(QUERY_ID_PROPERTY)
        conformed = with_rejections(
            conformed_messages(messages, self.source, f"{query_id}/{batch_id}", datetime.now(UTC)),
            message_checks(self.source, self.known_skus(messages.sparkSession)))
        # The bronze write is the one pass over the batch in the common case: it counts the bad messages
        # as it goes. It commits even when the batch has no valid message (all bad, or a new query's
        # empty first batch): a commit without rows costs less than a counting pass before every write.
        bad = self._write(stream_bronze_rows, conformed, self.source.bronze, query_id, batch_id)
        if bad is None:  # bronze had this batch already (a replay): count its bad messages
            bad = conformed.agg(F.count_if(F.col("_error").isNotNull())).first()[0]
        if bad:  # rare: a second pass, which reads the same offsets again
            self._write(dead_letter_rows, conformed, DEAD_LETTER, query_id, batch_id)

    def _write(self, rows_of, conformed, target, query_id: str, batch_id: int) -> int | None:
        """Append `rows_of(conformed)` to the target; return the batch's number of bad messages, counted
        by the same pass, or None when the write was committed before a restart (and is skipped)."""
        from pyspark.sql import Observation
        from pyspark.sql import functions as F

        location = target.location(self.settings)
        if (self.sink == "delta" and self.unfinished and batch_id == self.unfinished.batch
                and batch_committed(conformed.sparkSession, location, query_id, self.unfinished)):
            log.info("batch already written before the restart; skipped",
                     extra={"table": target.name, "query_id": query_id, "batch": batch_id})
            return None
        # An observed metric comes with the write's own pass. Its node also keeps the split's filter
        # above the parsing projection: pushed under it, the filter would inline from_json ~300 times.
        metrics = Observation()
        rows = rows_of(conformed.observe(metrics, F.count_if(F.col("_error").isNotNull()).alias("bad")), self.source)
        if self.sink == "noop":
            rows.write.format("noop").mode("append").save()
        else:
            delta.append(rows, target, self.settings, metadata={"query_id": query_id, "batch": batch_id})
        return metrics.get["bad"]


def start_query(spark, settings, source, options: StreamOptions):
    """Start one source's query (the checkpoint must already be verified)."""
    topic = source.topic(settings)
    starting = options.starting_offsets
    if options.reset_checkpoint:
        move_aside(settings, source)
        starting = resume_offsets(spark, settings, source, topic_partitions(settings.kafka_bootstrap_servers, topic))
        log.warning("checkpoint reset", extra={"source": source.name, "starting_offsets": starting})
    reader = (spark.readStream.format("kafka")
              .option("kafka.bootstrap.servers", settings.kafka_bootstrap_servers)
              .option("subscribe", topic)
              .option("startingOffsets", starting)
              # Offsets that vanished (retention, a recreated topic) are an error, never skipped silently.
              .option("failOnDataLoss", "true")
              # One task per Kafka partition would leave cores idle (3 partitions on 2 cores: the third
              # runs alone); Spark splits the offset ranges into at least this many tasks.
              .option("minPartitions", spark.sparkContext.defaultParallelism))
    if options.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", options.max_offsets_per_trigger)
    folder = checkpoint_folder(settings, source)
    writer = (reader.load().writeStream.queryName(source.bronze.name)
              .foreachBatch(BronzeBatchWriter(settings, source, options.sink, unfinished_batch(folder)))
              .option("checkpointLocation", str(folder)))
    writer = (writer.trigger(availableNow=True) if options.trigger == "available-now"
              else writer.trigger(processingTime=options.interval))
    query = writer.start()
    log.info("query started", extra={"source": source.name, "topic": topic, "query_id": query.id,
                                     "trigger": options.trigger, "interval": options.interval,
                                     "max_offsets_per_trigger": options.max_offsets_per_trigger})
    return query


def ensure_tables(spark, settings, sources) -> None:
    """Create the bronze and dead-letter tables empty if missing: two queries creating the shared
    dead-letter table with their first batches would conflict (Delta's ProtocolChangedException)."""
    for source in sources:
        empty = conformed_messages(spark.createDataFrame([], KAFKA_SOURCE_SCHEMA), source, "", datetime.now(UTC))
        for rows, target in ((stream_bronze_rows(empty, source), source.bronze),
                             (dead_letter_rows(empty, source), DEAD_LETTER)):
            if not delta_exists(spark, target.location(settings)):
                delta.create(rows, target, settings)


def bronze_starters(spark, settings, sources, options: StreamOptions) -> list[Starter]:
    """Verify every checkpoint (refusing before anything starts), create the tables and topics, then one
    starter per source: a first start with `options`, a restart from the checkpoint as it is."""
    if options.sink == "delta":
        if not options.reset_checkpoint:
            for source in sources:
                verify_checkpoint(spark, settings, source)
        ensure_tables(spark, settings, sources)
    ensure_topics(settings, sources)
    resumed = replace(options, reset_checkpoint=False, starting_offsets="earliest")
    return [lambda first, source=source: start_query(spark, settings, source, options if first else resumed)
            for source in sources]


def start(spark, settings, sources, options: StreamOptions) -> list:
    """Start one query per source (`bronze_starters`)."""
    return [starter(True) for starter in bronze_starters(spark, settings, sources, options)]


def batches_to_log(progress: list, last_logged: int) -> list:
    """The progress reports of the batches after `last_logged` that read rows. An idle report (no new
    data) carries the id of the batch still to come, so it must not count as that batch logged."""
    return [p for p in progress if p["numInputRows"] and p["batchId"] > last_logged]


def supervise(settings, starters: list[Starter], stopping: threading.Event, poll_s: float = 1.0) -> None:
    """Start the queries, log their progress and keep the heartbeat fresh until every query ends
    (available-now) or `stopping` is set; then stop them.

    A failed query is restarted from its checkpoint, at most MAX_RESTARTS times per run (exactly
    once makes that safe): Spark 4.1.1's Kafka source fails with a NullPointerException in its
    metrics when it replays an unfinished batch after a crash (SPARK-55271); a restart gets past it.
    """
    queries = [starter(True) for starter in starters]
    restarts = 0
    logged: dict[str, int] = {}
    heartbeat = heartbeat_file(settings)
    heartbeat.parent.mkdir(parents=True, exist_ok=True)
    try:
        while not stopping.is_set() and any(q.isActive for q in queries):
            for i, query in enumerate(queries):
                if not query.isActive and query.exception():
                    restarts += 1
                    if restarts > MAX_RESTARTS:
                        raise RuntimeError(f"query {query.name} failed: {query.exception()}")
                    log.warning("query failed; restarting from its checkpoint",
                                extra={"query": query.name, "restart": restarts, "error": str(query.exception())})
                    queries[i] = starters[i](False)
                    continue
                for progress in batches_to_log(query.recentProgress, logged.get(query.name, -1)):
                    log.info("batch", extra={
                        "query": query.name, "batch": progress["batchId"], "rows": progress["numInputRows"],
                        "rows_per_s": round(progress.get("processedRowsPerSecond") or 0),
                        "ms": progress["durationMs"].get("triggerExecution")})
                    logged[query.name] = progress["batchId"]
            tmp = heartbeat.with_suffix(".tmp")
            tmp.write_text(json.dumps({"pid": os.getpid(), "at": datetime.now(UTC).isoformat(),
                                       "batches": logged}))
            tmp.replace(heartbeat)
            stopping.wait(poll_s)
        failed = [q for q in queries if q.exception()]
        if failed:
            raise RuntimeError(f"query {failed[0].name} failed: {failed[0].exception()}")
    finally:
        for query in queries:
            query.stop()
        heartbeat.unlink(missing_ok=True)


def wait_for_broker(settings) -> None:
    deadline = time.monotonic() + settings.health_timeout_s
    while not kafka_answers(settings.kafka_bootstrap_servers):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no Kafka broker answers at {settings.kafka_bootstrap_servers} "
                               f"after {settings.health_timeout_s:.0f} s")
        time.sleep(1.0)


def build_parser(settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m streaming.bronze", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Stream Kafka topics <KAFKA_TOPIC_PREFIX>.<source> (simulated shoppers' clickstream and "
                    "transactions, the live market's competitor prices, the API's decisions) into "
                    "bronze.<source>_stream, bad messages into bronze.dead_letter, exactly once, and the streaming "
                    "features from them into the online tables (gold.live_*). Runs until stopped (SIGTERM/Ctrl-C) "
                    "with the processing-time trigger, or until caught up with --trigger available-now.")
    defaults = StreamOptions(settings.streaming_trigger_interval, settings.streaming_max_offsets_per_trigger)
    parser.add_argument("--source", action="append", choices=list(STREAMED),
                        help="stream only this source (repeatable; default: all)")
    features = parser.add_mutually_exclusive_group()
    features.add_argument("--no-features", action="store_true",
                          help="run the bronze queries only, not the streaming features (streaming.features)")
    features.add_argument("--features-only", action="store_true",
                          help="run the streaming features only, on the bronze streams as they are (no Kafka)")
    parser.add_argument("--trigger", choices=["processing", "available-now"], default=defaults.trigger,
                        help="processing: a micro-batch every --interval; available-now: what is there, then exit")
    parser.add_argument("--interval", default=defaults.interval, help="processing-time trigger interval")
    parser.add_argument("--max-offsets-per-trigger", type=int, default=defaults.max_offsets_per_trigger,
                        help="most messages per micro-batch and query (0: no limit)")
    parser.add_argument("--starting-offsets", default=defaults.starting_offsets,
                        help="where a NEW checkpoint starts: earliest, latest or Spark's offsets JSON "
                             "(ignored when the checkpoint exists)")
    parser.add_argument("--reset-checkpoint", action="store_true",
                        help="move the checkpoint aside and resume after the last Kafka offsets already "
                             "in the bronze and dead-letter tables")
    return parser


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    args = build_parser(settings).parse_args(argv)

    configure_logging()
    options = StreamOptions(args.interval, args.max_offsets_per_trigger or None, trigger=args.trigger,
                            starting_offsets=args.starting_offsets, reset_checkpoint=args.reset_checkpoint)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        with exclusive_checkpoints(settings):
            if not args.features_only:
                wait_for_broker(settings)
            spark = get_spark("streaming-bronze", settings)
            try:
                starters = ([] if args.features_only else
                            bronze_starters(spark, settings, [STREAMED[s] for s in args.source or STREAMED], options))
                if not args.no_features:
                    trigger = ({"availableNow": True} if options.trigger == "available-now"
                               else {"processingTime": options.interval})
                    starters += feature_starters(spark, settings, trigger)
                supervise(settings, starters, stopping)
            finally:
                spark.stop()
    except CheckpointError as err:
        log.error("checkpoint refused", extra={"error": str(err)})
        print(f"error: {err}", file=sys.stderr)
        return 2
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
