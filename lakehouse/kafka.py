"""Kafka clients of the stack: topic creation and a producer that neither loses nor duplicates."""

from __future__ import annotations

import logging
import sys

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from lakehouse.settings import Settings
from lakehouse.streams import StreamSource

log = logging.getLogger(__name__)

# Three partitions per topic: parallelism for local[2] with room to spare; keys keep a session's
# (or an order's) events in one partition, so they stay in order.
TOPIC_PARTITIONS = 3


def ensure_topics(settings: Settings, sources: list[StreamSource]) -> None:
    """Create the sources' topics if missing, so that neither side depends on auto-creation."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        existing = set(admin.list_topics())
        missing = [s.topic(settings) for s in sources if s.topic(settings) not in existing]
        if missing:
            # Replication factor -1: the broker's default (1 on the single native node, more on a cluster).
            admin.create_topics([NewTopic(t, TOPIC_PARTITIONS, -1) for t in missing])
            log.info("topics created", extra={"topics": missing, "partitions": TOPIC_PARTITIONS})
    except TopicAlreadyExistsError:
        pass  # another process (producer or job) created them first
    finally:
        admin.close()


def kafka_producer(bootstrap_servers: str, **overrides):
    """A producer that neither loses nor duplicates: acks from all in-sync replicas, idempotence (the
    broker drops a retried batch it already has), unbounded retries within the delivery timeout, and
    at most 5 requests in flight (the most idempotence keeps in order). `overrides` change other
    kafka-python options (timeouts, batching) for callers that must not wait as long."""
    return KafkaProducer(**{
        "bootstrap_servers": bootstrap_servers,
        "acks": "all",
        "enable_idempotence": True,
        "retries": sys.maxsize,
        "max_in_flight_requests_per_connection": 5,
        "delivery_timeout_ms": 180_000,
        "linger_ms": 20,
        "batch_size": 256 * 1024,
        **overrides,
    })
