"""The decision log: every pricing and shipping answer goes to Kafka without ever slowing a request.

`DecisionLogger.log(record)` appends the record to a bounded in-memory queue and returns: it never
blocks and never raises. A background thread drains the queue every `DRAIN_EVERY_S` into an
idempotent kafka-python producer (acks from all in-sync replicas, as `streaming.producer` configures it) on topic
`<prefix>.decisions`, keyed by decision_id; the streaming job lands the topic in
`bronze.decisions_stream`, silver promotion in `silver.decisions`. A record is dropped, and counted
in `lakehouse_decision_log_dropped_total{reason}`, when the queue is full, Kafka cannot be reached
(reconnection is retried with back-off), Kafka refuses it, or it cannot be serialized. `close()`
sends what is queued and flushes the producer.

The record's fields are declared once in `lakehouse.schemas.decisions`; `decision_record` builds one.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import deque
from datetime import UTC, date, datetime
from typing import Any

from lakehouse.kafka import ensure_topics, kafka_producer
from lakehouse.settings import Settings
from lakehouse.streams import DECISION_LOG
from serving.metrics import ServingMetrics

log = logging.getLogger(__name__)

# Fields the API may hand over as objects: they are sent as JSON strings.
_JSON_TEXT_FIELDS = ("request", "response")
# How often the sender thread drains the queue. In batches rather than woken per record: a wake-up per
# record made the thread take the GIL from the event loop on every request (measured: a tenth of a
# price request's CPU). Not much longer either: 50 ms of records held in memory (a few hundred KB at
# full load) measured 5 % more CPU per request than 10 ms. A record waits at most this long for Kafka.
DRAIN_EVERY_S = 0.01
# Reconnection back-off while Kafka cannot be reached.
RECONNECT_MIN_S, RECONNECT_MAX_S = 1.0, 30.0
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
                    reason_code: str | None = None) -> dict[str, Any]:
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
            "reason_code": reason_code}


def _plain(value: Any) -> Any:
    """JSON fallback for numpy scalars and arrays, dates and pydantic models."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode(record: dict[str, Any]) -> bytes:
    """The Kafka message value: the record as a JSON object; `request` and `response` as JSON text."""
    fields = dict(record)
    for name in _JSON_TEXT_FIELDS:
        if fields.get(name) is not None and not isinstance(fields[name], str):
            fields[name] = json.dumps(fields[name], default=_plain, separators=(",", ":"))
    return json.dumps(fields, default=_plain, separators=(",", ":")).encode()


class DecisionLogger:
    """Bounded, non-blocking, best-effort delivery of decision records to Kafka (see the module doc)."""

    def __init__(self, settings: Settings, metrics: ServingMetrics, connect_timeout_s: float = 2.0,
                 send_block_s: float = 1.0):
        self.settings, self.metrics = settings, metrics
        self.connect_timeout_s, self.send_block_s = connect_timeout_s, send_block_s
        # deque's append and popleft are atomic: neither side takes a lock per record.
        self._queue: deque[dict] = deque()
        self._capacity = settings.decision_log_queue_size
        self._stopping = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._producer = None
        self._topic: str | None = None
        self._retry_at = 0.0
        self._backoff_s = RECONNECT_MIN_S
        self._warned_at: dict[str, float] = {}
        metrics.track_queue_depth(self._queue.__len__)

    def start(self) -> DecisionLogger:
        """Start the thread that sends queued records (records logged before wait in the queue)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
            self._thread.start()
        return self

    def log(self, record: dict[str, Any]) -> None:
        """Queue `record` for Kafka and return at once; never raises. The logger owns the dict from now on."""
        try:
            if self._closed:
                self._drop("shutdown")
            elif len(self._queue) >= self._capacity:
                self._drop("queue_full")
            else:
                self._queue.append(record)
        except Exception:  # a failure to log must never fail the request
            self._drop("error")

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop accepting records, send what is queued, flush the producer (within about `timeout_s`)."""
        self._closed = True
        self._stopping.set()
        deadline = time.monotonic() + timeout_s
        if self._thread is not None:
            self._thread.join(timeout_s)
        # Left only when the thread did not finish (Kafka too slow) or never started.
        left = len(self._queue)
        self._queue.clear()
        if left:
            self._drop("shutdown", count=left)
        producer, self._producer = self._producer, None
        if producer is not None:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                producer.flush(timeout=remaining)
            except Exception as err:  # unsent records fail their futures: counted as kafka_error
                log.warning("decision log flush incomplete", extra={"error": repr(err)})
            producer.close(timeout=1.0)
        log.info("decision log closed", extra={"dropped_at_close": left})

    def _run(self) -> None:
        while True:
            stopping = self._stopping.wait(DRAIN_EVERY_S)
            self._drain()
            if stopping:
                return

    def _drain(self) -> None:
        """Send every queued record, or count them all dropped while Kafka cannot be reached."""
        batch = [self._queue.popleft() for _ in range(len(self._queue))]
        if not batch:
            return
        producer = self._producer or self._connect()
        if producer is None:
            self._drop("kafka_unavailable", count=len(batch))
            return
        for record in batch:
            self._send(producer, record)

    def _send(self, producer, record: dict[str, Any]) -> None:
        try:
            value = encode(record)
        except (TypeError, ValueError) as err:
            self._drop("unserializable", repr(err))
            return
        key = record.get("decision_id")
        try:
            future = producer.send(self._topic, key=str(key).encode() if key is not None else None, value=value)
        except Exception as err:  # buffer full for send_block_s, or the producer closed
            self._drop("kafka_error", repr(err))
            return
        future.add_callback(lambda _: self.metrics.decision_log_sent.inc())
        future.add_errback(lambda err: self._drop("kafka_error", repr(err)))

    def _connect(self):
        """A producer, or None while Kafka cannot be reached (retried with exponential back-off)."""
        now = time.monotonic()
        if now < self._retry_at:
            return None

        try:
            producer = kafka_producer(self.settings.kafka_bootstrap_servers,
                                      bootstrap_timeout_ms=int(self.connect_timeout_s * 1000),
                                      max_block_ms=int(self.send_block_s * 1000))
        except Exception as err:  # any failure to connect means: drop and retry later
            self._retry_at = now + self._backoff_s
            self._backoff_s = min(RECONNECT_MAX_S, self._backoff_s * 2)
            self._warn("kafka_unavailable", "Kafka unreachable; dropping decision records until it answers",
                       repr(err))
            return None
        try:
            ensure_topics(self.settings, [DECISION_LOG])
        except Exception as err:  # the broker auto-creates the topic; say so and go on
            log.warning("could not create the decision topic", extra={"error": repr(err)})
        self._topic = DECISION_LOG.topic(self.settings)
        self._backoff_s = RECONNECT_MIN_S
        self._producer = producer
        log.info("decision log connected", extra={"topic": self._topic,
                                                  "bootstrap_servers": self.settings.kafka_bootstrap_servers})
        return producer

    def _drop(self, reason: str, error: str | None = None, count: int = 1) -> None:
        self.metrics.decision_log_dropped.labels(reason).inc(count)
        if reason != "kafka_unavailable":
            self._warn(reason, "decision record dropped", error)

    def _warn(self, reason: str, message: str, error: str | None = None) -> None:
        now = time.monotonic()
        if now - self._warned_at.get(reason, -WARN_EVERY_S) >= WARN_EVERY_S:
            self._warned_at[reason] = now
            log.warning(message, extra={"reason": reason, "error": error})
