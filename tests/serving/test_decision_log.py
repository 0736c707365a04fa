import inspect
import json
import time
import uuid
from datetime import UTC, datetime

import numpy as np
import pytest

from lakehouse.schemas.decisions import DECISION_FIELDS
from serving.decision_log import DecisionLogger, decision_record, encode, new_decision_id
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
        "latency_ms": None, "live_features_as_of": None, "reason_code": None, "propensity": None,
        "charge_usd": None, "policy_version": None}
    assert decision_record(decision_id="d-1")["decision_id"] == "d-1"
    with pytest.raises(TypeError, match="unexpected keyword argument 'price'"):
        decision_record(price=1.0)


def test_the_record_builder_takes_exactly_the_declared_fields_in_their_order():
    assert list(inspect.signature(decision_record).parameters) == list(DECISION_FIELDS)


def test_decision_ids_are_distinct_rfc_version_4_uuids():
    ids = [new_decision_id() for _ in range(10_000)]

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
    with pytest.raises(TypeError, match="not JSON serializable: object"):
        encode({**record, "response": {"x": object()}})


def unreachable(settings, queue_size: int):
    """Settings whose Kafka is a port nobody listens on, and a producer queue of `queue_size` records."""
    return settings.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}",
                                       "decision_log_queue_size": queue_size})


def test_a_full_queue_drops_and_counts_without_blocking_and_close_counts_what_is_left(own_settings):
    metrics = ServingMetrics()
    logger = DecisionLogger(unreachable(own_settings, 2), metrics).start()

    for i in range(5):  # nothing is delivered: a blocking hand-over would hang here (pytest-timeout)
        logger.log(decision_record(decision_id=f"d-{i}"))

    assert dropped(metrics, "queue_full") == 3
    assert metrics.registry.get_sample_value("lakehouse_decision_log_queue_depth") == 2
    logger.close(timeout_s=0.1)  # Kafka never answers: what the producer holds is counted, not lost
    assert dropped(metrics, "shutdown") == 2 and logger.queue_depth == 0
    logger.log(decision_record())
    assert dropped(metrics, "shutdown") == 3


def test_with_kafka_unreachable_log_returns_at_once_and_every_record_is_counted_dropped(own_settings):
    metrics = ServingMetrics()
    logger = DecisionLogger(unreachable(own_settings, 5), metrics, delivery_timeout_s=1.0).start()

    took = []
    for _ in range(20):
        started = time.perf_counter()
        logger.log(decision_record())
        took.append(time.perf_counter() - started)
    deadline = time.monotonic() + 30
    while logger.queue_depth and time.monotonic() < deadline:
        time.sleep(0.05)
    logger.close(timeout_s=5)

    # A hand-over that waited for Kafka would take the 1 s delivery timeout; a tenth leaves room for a loaded machine.
    assert max(took) < 0.1, took
    assert (sent(metrics), dropped(metrics, "queue_full"), dropped(metrics, "kafka_unavailable")) == (0, 15, 5)
