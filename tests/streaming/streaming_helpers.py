"""Helpers of the streaming tests: run the bronze queries until caught up, read what landed."""

from __future__ import annotations

from pyspark.sql import functions as F

from lakehouse.delta import delta_exists, read_delta
from lakehouse.settings import Settings
from lakehouse.streams import DEAD_LETTER, SHOPPER_STREAMS
from streaming.bronze import StreamOptions, start


def run_available_now(spark, settings: Settings, sources=None, timeout_s: float = 120.0, **options) -> list:
    """Run the bronze queries until they have caught up with the topics; return the finished queries."""
    queries = start(spark, settings, [SHOPPER_STREAMS[s] for s in sources or SHOPPER_STREAMS],
                    StreamOptions("1 second", options.pop("max_offsets_per_trigger", None),
                                  trigger="available-now", **options))
    for query in queries:
        finished = query.awaitTermination(timeout_s)
        assert finished, f"{query.name} still running after {timeout_s} s"
        assert query.exception() is None, query.exception()
    return queries


def bronze_ids(spark, settings: Settings, source: str) -> list[str]:
    location = SHOPPER_STREAMS[source].bronze.location(settings)
    if not delta_exists(spark, location):
        return []
    return [r.event_id for r in read_delta(spark, location).select("event_id").collect()]


def dead_letters(spark, settings: Settings):
    return read_delta(spark, DEAD_LETTER.location(settings)).where(
        F.col("_kafka_topic").startswith(settings.kafka_topic_prefix + "."))
