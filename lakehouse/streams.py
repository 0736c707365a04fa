"""The streamed sources: topic, message schema, message key and bronze table of each, derived from
`lakehouse.sources` (a source with a `message_key` streams)."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql.types import StructType

from lakehouse.quality import Rule
from lakehouse.settings import Settings
from lakehouse.sources import SOURCES, Source
from lakehouse.tables import Table, table


@dataclass(frozen=True)
class StreamSource:
    """One source that arrives through Kafka."""

    name: str
    schema: StructType
    key: str  # the message key: events of one key land in one partition, in order
    required: tuple[str, ...]  # the natural key: a message without it is a dead letter
    rules: tuple[Rule, ...] = ()  # what else a message must satisfy (Source.message_rules)
    event_time: str | None = None  # a column that may not be later than the Kafka timestamp
    sku_known: bool = False  # the message's SKU must be in the catalogue

    @classmethod
    def of(cls, source: Source) -> StreamSource:
        return cls(source.name, source.landing, source.message_key, source.key, source.message_rules,
                   source.message_time, source.message_sku_known)

    @property
    def bronze(self) -> Table:
        return table(f"bronze.{self.name}_stream")

    def topic(self, settings: Settings) -> str:
        return f"{settings.kafka_topic_prefix}.{self.name}"


# Everything the streaming job lands in bronze.
STREAMED: dict[str, StreamSource] = {s.name: StreamSource.of(s) for s in SOURCES.values() if s.message_key}
# What the API sends: one record per pricing or shipping decision (serving.decision_log).
DECISION_LOG = STREAMED["decisions"]
# What simulated shoppers send (streaming.producer, simulator.shoppers).
SHOPPER_STREAMS: dict[str, StreamSource] = {n: STREAMED[n] for n in ("transactions", "clickstream")}
# What the simulator's live market sends: competitor price observations.
MARKET_STREAM = STREAMED["market_prices"]

DEAD_LETTER = table("bronze.dead_letter")
