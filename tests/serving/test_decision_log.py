import inspect
import json
import time
import uuid
from datetime import UTC, datetime

import numpy as np
import pytest

from lakehouse.schemas.decisions import DECISION_FIELDS
from serving import decision_log
from serving.decision_log import DecisionLogger, decision_record, encode
from serving.metrics import ServingMetrics
from tests.support import free_port


def dropped(metrics: ServingMetrics, reason: str) -> float:
    return metrics.registry.get_sample_value("lakehouse_decision_log_dropped_total", {"reason": reason}) or 0.0


def sent(metrics: ServingMetrics) -> float:
    return metrics.registry.get_sample_value("lakehouse_decision_log_sent_total") or 0.0


def test_a_record_has_every_declared_field_a_fresh_id_and_the_time():
    before = datetime.now(UTC)
    record = decision_record(endpoint="pricing", sku="SKU-000001", price_usd=19.99, guardrails=["min_margin"])

    assert list(record) == list(DECISION_FIELDS)
    assert uuid.UUID(record["decision_id"]).version == 4
    assert before <= datetime.fromisoformat(record["event_time"]) <= datetime.now(UTC)
    assert {k: v for k, v in record.items() if k not in ("decision_id", "event_time")} == {
        "endpoint": "pricing", "customer_id": None, "session_id": None, "experiment": None, "variant": None,
        "strategy": None, "model_name": None, "model_version": None, "sku": "SKU-000001", "request": None,
        "response": None, "price_usd": 19.99, "estimate_usd": None, "guardrails": ["min_margin"], "fallback": False,
        "latency_ms": None, "live_features_as_of": None, "reason_code": None}
    assert decision_record(decision_id="d-1")["decision_id"] == "d-1"
    with pytest.raises(TypeError, match="unexpected keyword argument 'price'"):
        decision_record(price=1.0)


def test_the_record_builder_takes_exactly_the_declared_fields_in_their_order():
    assert list(inspect.signature(decision_record).parameters) == list(DECISION_FIELDS)


def test_decision_ids_are_distinct_rfc_version_4_uuids():
    ids = [decision_log.new_decision_id() for _ in range(10_000)]

    assert len(set(ids)) == len(ids)
    for text in ids[:1000]:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


def test_encoding_turns_request_and_response_into_json_text_and_numpy_into_numbers():
    record = decision_record(decision_id="d-1", event_time="2026-11-24T06:00:00+00:00", endpoint="pricing",
                             request={"sku": "SKU-000001", "quantity": np.int64(2)},
                             response='{"price_usd": 19.99}', price_usd=np.float64(19.99), latency_ms=1.5)

    message = json.loads(encode(record))

    assert message["request"] == '{"sku":"SKU-000001","quantity":2}'
    assert message["response"] == '{"price_usd": 19.99}'  # a string is sent as it is
    assert message["price_usd"] == 19.99 and message["guardrails"] == [] and message["fallback"] is False
    assert list(message) == list(DECISION_FIELDS)
    with pytest.raises(TypeError, match="object is not JSON serializable"):
        encode({**record, "response": {"x": object()}})


def test_a_full_queue_drops_and_counts_without_blocking(own_settings):
    metrics = ServingMetrics()
    logger = DecisionLogger(own_settings.model_copy(update={"decision_log_queue_size": 2}), metrics)

    for i in range(5):  # nothing consumes the queue: a blocking put would hang here (pytest-timeout)
        logger.log(decision_record(decision_id=f"d-{i}"))

    assert dropped(metrics, "queue_full") == 3
    assert metrics.registry.get_sample_value("lakehouse_decision_log_queue_depth") == 2
    logger.close(timeout_s=0.1)  # never started: what is queued cannot be sent
    assert dropped(metrics, "shutdown") == 2
    logger.log(decision_record())
    assert dropped(metrics, "shutdown") == 3


class FakeFuture:
    def __init__(self, error: Exception | None):
        self.error = error

    def add_callback(self, callback):
        if self.error is None:
            callback("metadata")
        return self

    def add_errback(self, errback):
        if self.error is not None:
            errback(self.error)
        return self


class FakeProducer:
    """kafka-python's producer surface the logger uses; refuses the values it is told to."""

    def __init__(self, refuse: set[str], fail: set[str]):
        self.refuse, self.fail = refuse, fail
        self.messages, self.flushed, self.closed = [], False, False

    def send(self, topic, key, value):
        if key.decode() in self.refuse:
            raise TimeoutError("buffer full")
        self.messages.append((topic, key, value))
        return FakeFuture(RuntimeError("NotEnoughReplicas") if key.decode() in self.fail else None)

    def flush(self, timeout):
        self.flushed = True

    def close(self, timeout):
        self.closed = True


def test_records_are_sent_in_order_keyed_by_decision_id_and_failures_counted(own_settings):
    metrics, producer = ServingMetrics(), FakeProducer(refuse={"d-2"}, fail={"d-3"})
    logger = DecisionLogger(own_settings, metrics)
    logger._producer, logger._topic = producer, "shop.decisions"  # as if connected
    records = [decision_record(decision_id=f"d-{i}", latency_ms=float(i)) for i in range(5)]
    records.insert(1, decision_record(decision_id="d-bad", request={"x": object()}))

    logger.start()
    for record in records:
        logger.log(record)
    logger.close()

    assert [(t, k.decode()) for t, k, _ in producer.messages] == [("shop.decisions", f"d-{i}") for i in (0, 1, 3, 4)]
    assert [json.loads(v)["latency_ms"] for _, _, v in producer.messages] == [0.0, 1.0, 3.0, 4.0]
    assert producer.flushed and producer.closed
    assert (sent(metrics), dropped(metrics, "unserializable"), dropped(metrics, "kafka_error")) == (3, 1, 2)


def test_with_kafka_unreachable_log_returns_at_once_and_every_record_is_counted_dropped(own_settings, monkeypatch):
    port = free_port()  # nobody listens there
    monkeypatch.setattr(decision_log, "RECONNECT_MIN_S", 60.0)  # one attempt only during the test
    metrics = ServingMetrics()
    logger = DecisionLogger(own_settings.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{port}",
                                                            "decision_log_queue_size": 5}),
                            metrics, connect_timeout_s=0.5).start()

    took = []
    for _ in range(20):
        started = time.perf_counter()
        logger.log(decision_record())
        took.append(time.perf_counter() - started)
    deadline = time.monotonic() + 30
    while logger.queue_depth and time.monotonic() < deadline:
        time.sleep(0.05)
    logger.close(timeout_s=5)

    # Blocking on Kafka would cost the 0.5 s connection timeout; half of it leaves room for a loaded machine.
    assert max(took) < 0.25, took
    assert sent(metrics) == 0
    assert dropped(metrics, "kafka_unavailable") + dropped(metrics, "queue_full") == 20
    # The first record waits for the connection attempt; the queue holds 5 more; the rest is refused.
    assert dropped(metrics, "queue_full") >= 14
