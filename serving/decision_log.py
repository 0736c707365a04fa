"""The decision log: every pricing and shipping answer goes to Kafka without ever slowing a request.

`DecisionLogger.log(record)` encodes the record (orjson) and hands it to a librdkafka producer
(`confluent-kafka`; acks from all in-sync replicas and idempotence, as `lakehouse.kafka` configures every
producer) on topic `<prefix>.decisions`, keyed by decision_id, and returns: it never blocks and never
raises. librdkafka batches and sends from its own threads, which do not hold Python's GIL; a thread of
ours serves the delivery reports. The streaming job lands the topic in `bronze.decisions_stream`, silver
promotion in `silver.decisions`.

Every record is either sent (`lakehouse_decision_log_sent_total`) or dropped and counted in
`lakehouse_decision_log_dropped_total{reason}`: `queue_full` when the producer already holds
`decision_log_queue_size` unsent records, `kafka_unavailable` when Kafka did not take it within the delivery
timeout (librdkafka reconnects by itself), `kafka_error` when Kafka refused it, `unserializable`, and
`shutdown` for what `close()` could not send in time or what is logged after it.

The record's fields are declared once in `lakehouse.schemas.decisions`; `decision_record` builds one.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import KafkaError

from lakehouse.kafka import ensure_topics, kafka_producer
from lakehouse.settings import Settings
from lakehouse.streams import DECISION_LOG
from serving.metrics import ServingMetrics

log = logging.getLogger(__name__)

# Fields the API may hand over as objects: they are sent as JSON strings.
_JSON_TEXT_FIELDS = ("request", "response")
_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
# How long a record may wait for Kafka (a broker restart fits in it) before it is counted kafka_unavailable.
DELIVERY_TIMEOUT_S = 30.0
# How long the delivery-report thread waits for reports in one call (in librdkafka, without the GIL).
POLL_S = 0.1
# Delivery errors that mean "Kafka did not answer in time", rather than "Kafka refused".
_UNAVAILABLE = {KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT, KafkaError._TRANSPORT,
                KafkaError._ALL_BROKERS_DOWN}
_PURGED = {KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT}
# At most one warning per reason in this many seconds (the counter has every drop).
WARN_EVERY_S = 10.0


def new_decision_id() -> str:
    """A random (version 4) UUID as text. From `random`, not `uuid.uuid4`'s `os.urandom`: the id needs to
    be unique, not secret (`random` reseeds in every forked worker), and a system call per request cost
    about as much as the rest of the id. Formatted by hand: `uuid.UUID` costs twice as much."""
    bits = random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET
    text = f"{bits:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


# RFC 9562 version 4: version bits 0100 (bits 76-79), variant bits 10 (bits 62-63).
_UUID4_CLEAR = ~((0xF << 76) | (0x3 << 62))
_UUID4_SET = (0x4 << 76) | (0x2 << 62)


def decision_record(*, decision_id: str | None = None, event_time: str | None = None, endpoint: str | None = None,
                    customer_id: str | None = None, session_id: str | None = None, experiment: str | None = None,
                    variant: str | None = None, strategy: str | None = None, model_name: str | None = None,
                    model_version: str | None = None, sku: str | None = None, request: Any = None,
                    response: Any = None, price_usd: float | None = None, estimate_usd: float | None = None,
                    guardrails: list[str] | None = None, fallback: bool = False,
                    latency_ms: float | None = None, live_features_as_of: str | None = None,
                    reason_code: str | None = None, propensity: float | None = None, charge_usd: float | None = None,
                    policy_version: str | None = None) -> dict[str, Any]:
    """A decision log record: one keyword per field of `DECISION_FIELDS`, in its order (a test holds the
    two equal; keywords rather than `**fields` keep an unknown field a TypeError at no cost per request),
    with a new `decision_id` (`new_decision_id`) and the current UTC `event_time` unless given."""
    return {"decision_id": new_decision_id() if decision_id is None else decision_id,
            "event_time": datetime.now(UTC).isoformat() if event_time is None else event_time,
            "endpoint": endpoint, "customer_id": customer_id, "session_id": session_id, "experiment": experiment,
            "variant": variant, "strategy": strategy, "model_name": model_name, "model_version": model_version,
            "sku": sku, "request": request, "response": response, "price_usd": price_usd,
            "estimate_usd": estimate_usd, "guardrails": [] if guardrails is None else guardrails,
            "fallback": fallback, "latency_ms": latency_ms, "live_features_as_of": live_features_as_of,
            "reason_code": reason_code, "propensity": propensity, "charge_usd": charge_usd,
            "policy_version": policy_version}


def _plain(value: Any) -> Any:
    """JSON fallback for what orjson does not know: pydantic models and numpy scalars it leaves out."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        return value.item()
    raise TypeError  # orjson names the type in its own error


def encode(record: dict[str, Any]) -> bytes:
    """The Kafka message value: the record as a JSON object; `request` and `response` as JSON text."""
    fields = dict(record)
    for name in _JSON_TEXT_FIELDS:
        if fields.get(name) is not None and not isinstance(fields[name], str):
            fields[name] = orjson.dumps(fields[name], default=_plain, option=_ORJSON_OPTIONS).decode()
    return orjson.dumps(fields, default=_plain, option=_ORJSON_OPTIONS)


class DecisionLogger:
    """Non-blocking delivery of decision records to Kafka, each one sent or counted dropped (see the module doc)."""

    def __init__(self, settings: Settings, metrics: ServingMetrics, delivery_timeout_s: float = DELIVERY_TIMEOUT_S):
        self.settings, self.metrics = settings, metrics
        self._topic = DECISION_LOG.topic(settings)
        # librdkafka connects in the background: creating the producer neither waits for nor needs Kafka.
        self._producer = kafka_producer(settings.kafka_bootstrap_servers, **{
            "message.timeout.ms": int(delivery_timeout_s * 1000),
            "queue.buffering.max.messages": settings.decision_log_queue_size,
            "on_delivery": self._delivered})
        # Records handed to the producer, and those since delivered or dropped: each has one writer (the event
        # loop, which runs every endpoint; the thread serving delivery reports), so no lock. librdkafka's own
        # queue length also counts its protocol requests.
        self._handed = self._settled = 0
        self._closed = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned_at: dict[str, float] = {}
        metrics.track_queue_depth(lambda: self.queue_depth)

    def start(self) -> DecisionLogger:
        """Start the thread that creates the topic if missing and serves delivery reports."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
            self._thread.start()
        return self

    def log(self, record: dict[str, Any]) -> None:
        """Hand `record` to the producer and return at once; never raises."""
        if self._closed:
            self._drop("shutdown")
            return
        try:
            value = encode(record)
        except (TypeError, ValueError) as err:
            self._drop("unserializable", repr(err))
            return
        key = record.get("decision_id")
        try:
            self._producer.produce(self._topic, value, None if key is None else str(key).encode())
            self._handed += 1
        except BufferError:
            self._drop("queue_full")
        except Exception as err:  # a failure to log must never fail the request
            self._drop("kafka_error", repr(err))

    @property
    def queue_depth(self) -> int:
        """Records handed to the producer and not yet delivered or dropped."""
        return self._handed - self._settled

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop accepting records and send what the producer holds; what is left after `timeout_s` is
        counted dropped (`shutdown`)."""
        self._closed = True
        self._stopping.set()
        if self._thread is not None:  # from now on, this thread alone serves the delivery reports
            self._thread.join(timeout_s)
        self._producer.flush(timeout_s)
        left = self.queue_depth
        if left:
            # Purged records get a delivery report each (counted as shutdown in `_delivered`).
            self._producer.purge()
            self._producer.flush(1.0)
        log.info("decision log closed", extra={"dropped_at_close": left})

    def _run(self) -> None:
        try:
            ensure_topics(self.settings, [DECISION_LOG])
        except Exception as err:  # the broker auto-creates the topic; say so and go on
            log.warning("could not create the decision topic", extra={"error": repr(err)})
        while not self._stopping.is_set():
            self._producer.poll(POLL_S)

    def _delivered(self, error: KafkaError | None, _message) -> None:
        self._settled += 1
        if error is None:
            self.metrics.decision_log_sent.inc()
        elif error.code() in _PURGED:
            self._drop("shutdown")
        else:
            self._drop("kafka_unavailable" if error.code() in _UNAVAILABLE else "kafka_error", error.str())

    def _drop(self, reason: str, error: str | None = None) -> None:
        self.metrics.decision_log_dropped.labels(reason).inc()
        self._warn(reason, "decision record dropped", error)

    def _warn(self, reason: str, message: str, error: str | None = None) -> None:
        now = time.monotonic()
        if now - self._warned_at.get(reason, -WARN_EVERY_S) >= WARN_EVERY_S:
            self._warned_at[reason] = now
            log.warning(message, extra={"reason": reason, "error": error})
