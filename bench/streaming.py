"""Streaming ingestion benchmark: Kafka -> bronze Delta throughput and end-to-end latency.

Starts its own Kafka broker on free ports in a temporary folder (never the `make up` stack).
Throughput: a backlog of `400_000 * scale` simulated events is ingested by the bronze queries with
the available-now trigger, once into Delta and once, as the same-run reference, into Spark's `noop`
sink (same parsing, conforming and splitting; only the writes differ); the sustained rate is input
rows over the summed micro-batch durations, leaving out each query's first batch (one-off start-up
costs; the whole drain is in the details). Latency: events produced at a steady rate for a minute
while the queries run with a 1 s processing-time trigger, from after their first batch; per event,
the Delta commit time of the batch that holds it minus the Kafka (produce) timestamp.
"""

from __future__ import annotations

import json
import logging
import socket
import tempfile
import time
from pathlib import Path

from bench.results import BenchRecord
from lakehouse.delta import read_delta
from lakehouse.settings import Settings, get_settings
from lakehouse.spark import get_spark
from lakehouse.streams import SHOPPER_STREAMS
from orchestration.stack import Stack
from streaming.bronze import StreamOptions, start
from streaming.producer import produce

log = logging.getLogger(__name__)

BACKLOG_EVENTS = 400_000
LATENCY_RATE = 1_000  # events/s during the latency run
LATENCY_SECONDS = 60
TRIGGER = "1 second"
MAX_OFFSETS = 50_000
TARGET_RATE, TARGET_RATIO, TARGET_P95_S = 20_000, 0.5, 5.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rate(batches: dict[str, list[dict]]) -> dict:
    """Rows/s of the queries' micro-batches (name -> progress of the batches with rows)."""
    rows = sum(p["numInputRows"] for progress in batches.values() for p in progress)
    # The queries run side by side: their batches overlap, so the busy time is that of the longest
    # query's batches, not the sum over both.
    busy_s = max(sum(p["durationMs"]["triggerExecution"] for p in progress) for progress in batches.values()) / 1000
    return {"rows": rows, "busy_s": round(busy_s, 2), "events_per_s": round(rows / busy_s),
            "batches": sum(len(progress) for progress in batches.values())}


def _ingest_rate(spark, settings: Settings, sink: str) -> dict:
    """Drain the backlog with the available-now trigger. The sustained rate leaves out each query's
    first micro-batch, which pays one-off costs (Kafka consumers, code generation, a cold JIT), and so
    a query with a single batch; `whole_drain` has every batch."""
    queries = start(spark, settings, list(SHOPPER_STREAMS.values()),
                    StreamOptions(TRIGGER, MAX_OFFSETS, trigger="available-now", sink=sink))
    wall = time.monotonic()
    for query in queries:
        query.awaitTermination()
        if query.exception():
            raise RuntimeError(f"{query.name} failed: {query.exception()}")
    wall = time.monotonic() - wall
    batches = {q.name: [p for p in q.recentProgress if p["numInputRows"]] for q in queries}
    later = {name: progress[1:] for name, progress in batches.items() if len(progress) > 1}
    if not later:
        raise RuntimeError(f"the backlog fills one micro-batch of {MAX_OFFSETS} per query; raise --scale")
    sustained = _rate(later)
    return {**sustained, "first_batch_s": {name: progress[0]["durationMs"]["triggerExecution"] / 1000
                                           for name, progress in batches.items()},
            "whole_drain": {**_rate(batches), "wall_s": round(wall, 2)}}


def _wait_until(condition, what: str, poll_s: float, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the latency run timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def _latencies(spark, settings: Settings) -> dict:
    """Produce at a steady rate while the queries run; per-event commit time minus produce time."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    queries = start(spark, settings, list(SHOPPER_STREAMS.values()), StreamOptions(TRIGGER, MAX_OFFSETS))
    try:
        # A running stream's latency: the queries' start (their first, empty batch: Kafka consumers,
        # planning) is over before the first event; the rate run reports that one-off cost.
        _wait_until(lambda: all(query.recentProgress for query in queries), "the queries to finish a first batch", 0.2)
        produced = produce(settings, duration_s=LATENCY_SECONDS, rate=LATENCY_RATE)
        locations = [s.bronze.location(settings) for s in SHOPPER_STREAMS.values()]
        _wait_until(lambda: sum(read_delta(spark, loc).count() for loc in locations) >= sum(produced.sent.values()),
                    "every event to land", 1.0)
    finally:
        for query in queries:
            query.stop()
    frames = []
    for location in locations:
        commits = (DeltaTable.forPath(spark, location).history().where(F.col("userMetadata").isNotNull())
                   .select(F.col("timestamp").alias("committed_at"),
                           F.get_json_object("userMetadata", "$.query_id").alias("query_id"),
                           F.get_json_object("userMetadata", "$.batch").alias("batch")))
        rows = read_delta(spark, location).select(
            F.split("_batch_id", "/")[0].alias("query_id"), F.split("_batch_id", "/")[1].alias("batch"),
            "_kafka_timestamp")
        frames.append(rows.join(commits, ["query_id", "batch"]).select(
            (F.unix_micros("committed_at") - F.unix_micros("_kafka_timestamp")).alias("latency_us")))
    latency = frames[0].unionByName(frames[1])
    p50, p95 = latency.select(F.percentile("latency_us", [0.5, 0.95])).first()[0]
    return {"events": latency.count(), "rate": LATENCY_RATE, "seconds": LATENCY_SECONDS,
            "p50_s": round(p50 / 1e6, 3), "p95_s": round(p95 / 1e6, 3)}


def run(scale: float) -> list[BenchRecord]:
    base = get_settings()
    with tempfile.TemporaryDirectory(prefix="bench-streaming-") as tmp:
        def settings(name: str) -> Settings:
            return Settings(state_dir=Path(tmp) / name, jars_dir=base.jars_dir, spark_ui_enabled=False,
                            catalog_enabled=False,
                            kafka_bootstrap_servers=f"127.0.0.1:{port}", kafka_controller_port=controller,
                            kafka_topic_prefix=name)

        port, controller = _free_port(), _free_port()
        broker = Stack(settings("kafka"), only=["kafka"])
        broker.up()
        try:
            spark = get_spark("bench-streaming", settings("kafka"))
            backlog = settings("backlog")
            started = time.monotonic()
            produced = produce(backlog, count=int(BACKLOG_EVENTS * scale), rate=None)
            produce_rate = round(produced.total / (time.monotonic() - started))
            noop = _ingest_rate(spark, backlog, "noop")
            # Same topics, a fresh checkpoint folder and lake: the Delta run reads the same backlog.
            delta = _ingest_rate(spark, backlog.model_copy(update={"state_dir": Path(tmp) / "delta"}), "delta")
            latency = _latencies(spark, settings("latency"))
            spark.stop()
        finally:
            broker.down()

    details = {"backlog_events": produced.total, "producer_events_per_s": produce_rate, "trigger": TRIGGER,
               "max_offsets_per_trigger": MAX_OFFSETS, "delta": delta, "noop": noop, "latency": latency}
    log.info("streaming bench", extra={"details": json.dumps(details)})
    rate_ok = delta["events_per_s"] >= TARGET_RATE and delta["events_per_s"] >= TARGET_RATIO * noop["events_per_s"]
    trigger_s = 1.0
    return [
        BenchRecord("streaming_bronze_events_per_s", delta["events_per_s"], "events/s",
                    "same queries into Spark's noop sink", noop["events_per_s"],
                    f">= {TARGET_RATE} events/s and ratio >= {TARGET_RATIO}", rate_ok, details),
        BenchRecord("streaming_latency_p95", latency["p95_s"], "s", "processing-time trigger interval", trigger_s,
                    f"p95 <= {TARGET_P95_S} s", latency["p95_s"] <= TARGET_P95_S, details),
        BenchRecord("streaming_latency_p50", latency["p50_s"], "s", "processing-time trigger interval", trigger_s,
                    "informational (p95 carries the target)", True, details),
    ]

