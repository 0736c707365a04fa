"""The streamed sources: topic, declared schema, message key and bronze table of each, in one place."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql.types import StructType

from lakehouse.schemas.keys import LANDING_KEYS
from lakehouse.schemas.landing import CLICKSTREAM, DECISIONS, TRANSACTIONS
from lakehouse.settings import Settings
from lakehouse.tables import Table, table

log = logging.getLogger(__name__)

# Three partitions per topic: parallelism for local[2] with room to spare; keys keep a session's
# (or an order's) events in one partition, so they stay in order.
TOPIC_PARTITIONS = 3


@dataclass(frozen=True)
class StreamSource:
    """One landing source that arrives through Kafka."""

    name: str
    schema: StructType
    key: str  # the message key: events of one key land in one partition, in order

    @property
    def required(self) -> tuple[str, ...]:
        return LANDING_KEYS[self.name]

    @property
    def bronze(self) -> Table:
        return table(f"bronze.{self.name}_stream")

    def topic(self, settings: Settings) -> str:
        return f"{settings.kafka_topic_prefix}.{self.name}"


# What simulated shoppers send (streaming.producer).
SOURCES: dict[str, StreamSource] = {
    "transactions": StreamSource("transactions", TRANSACTIONS, key="order_id"),
    "clickstream": StreamSource("clickstream", CLICKSTREAM, key="session_id"),
}
# What the API sends: one record per pricing or shipping decision (serving.decision_log).
DECISION_LOG = StreamSource("decisions", DECISIONS, key="decision_id")
# Everything the streaming job lands in bronze.
STREAMED: dict[str, StreamSource] = {**SOURCES, DECISION_LOG.name: DECISION_LOG}

DEAD_LETTER = table("bronze.dead_letter")


def source(name: str) -> StreamSource:
    try:
        return STREAMED[name]
    except KeyError:
        raise KeyError(f"unknown stream source {name!r}; known: {', '.join(STREAMED)}") from None


def ensure_topics(settings: Settings, sources: list[StreamSource]) -> None:
    """Create the sources' topics if missing, so that neither side depends on auto-creation."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

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
