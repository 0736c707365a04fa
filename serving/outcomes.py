"""The outcome stream of the API's bandit arm: the decision log and the clickstream, read from Kafka, joined
by decision_id (`readout.outcomes.OutcomeJoin`) and fed to the bandit (`serving.bandit.BanditArm.observe`)
every `FLUSH_S` seconds, so a price's outcomes move the posterior within a minute.

One consumer group per topic prefix (`<prefix>.bandit-outcomes`) reads both topics from the offsets it
committed, which it commits only after the bandit's state holding their outcomes was saved: a crash between
the two re-reads a few seconds of messages. What the join holds in memory (decisions whose add-to-cart has
not come, add-to-carts whose decision has not come) does not survive a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

import orjson
from confluent_kafka import Consumer, KafkaError

from lakehouse.settings import Settings
from lakehouse.streams import DECISION_LOG, SHOPPER_STREAMS
from readout.outcomes import OutcomeJoin
from serving.bandit import BanditArm

log = logging.getLogger(__name__)

FLUSH_S = 10.0
POLL_S = 1.0
BATCH = 1000


class OutcomeStream:
    """A thread consuming decisions and clickstream events into the bandit; `observed` counts the outcome
    rows the bandit used (for tests and logs)."""

    def __init__(self, settings: Settings, arm: BanditArm, flush_s: float = FLUSH_S):
        self.settings, self.arm, self.flush_s = settings, arm, flush_s
        self.join = OutcomeJoin()
        self.observed = 0
        self._topics = {DECISION_LOG.topic(settings): "decisions",
                        SHOPPER_STREAMS["clickstream"].topic(settings): "clickstream"}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> OutcomeStream:
        self._thread = threading.Thread(target=self._run, name="bandit-outcomes", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        consumer = Consumer({"bootstrap.servers": self.settings.kafka_bootstrap_servers,
                             "group.id": f"{self.settings.kafka_topic_prefix}.bandit-outcomes",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False,
                             "allow.auto.create.topics": True})
        consumer.subscribe(list(self._topics))
        last_flush = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    self._take(consumer.consume(BATCH, timeout=POLL_S))
                    if time.monotonic() - last_flush >= self.flush_s:
                        self.flush(consumer)
                        last_flush = time.monotonic()
                except Exception:  # noqa: BLE001 - a bad message or a failed save must not stop the learning
                    log.exception("outcome stream batch failed; going on")
            self.flush(consumer)
        finally:
            consumer.close()

    def _take(self, messages) -> None:
        decisions, events = [], []
        for message in messages:
            error = message.error()
            if error is not None:
                # A topic nobody has written to yet is not an error: the consumer picks it up once created.
                if error.code() not in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                    log.warning("outcome stream error", extra={"error": str(error)})
                continue
            try:
                value = orjson.loads(message.value())
            except orjson.JSONDecodeError:  # the streaming job dead-letters it; nothing to learn from here
                continue
            if not isinstance(value, dict):  # likewise
                continue
            (decisions if self._topics[message.topic()] == "decisions" else events).append(value)
        self.join.add_decisions(decisions)
        self.join.add_events(events)

    def flush(self, consumer: Consumer | None = None) -> None:
        """Feed what the join has not counted yet to the bandit, save its state, then commit the offsets."""
        outcomes = self.join.drain(datetime.now(UTC))
        if not outcomes.empty:
            self.observed += self.arm.observe(outcomes)
            self.arm.save()
        if consumer is not None:
            try:
                consumer.commit(asynchronous=False)
            except Exception as error:  # noqa: BLE001 - nothing consumed yet, or the broker away: retried next flush
                log.debug("offsets not committed", extra={"error": repr(error)})
