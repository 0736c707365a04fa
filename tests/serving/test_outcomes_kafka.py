"""Integration: decisions and clickstream events on the real broker -> the outcome stream -> the bandit's
views and add-to-carts, each counted once though the events come duplicated and late."""

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest

from lakehouse.kafka import ensure_topics, kafka_producer, send
from lakehouse.streams import DECISION_LOG, SHOPPER_STREAMS
from pricing.bandit import BanditState
from serving.bandit import BanditArm
from serving.decision_log import decision_record
from serving.outcomes import OutcomeStream

pytestmark = pytest.mark.integration

T0 = datetime.now(UTC)


def produce(settings, topic: str, records: list[dict]) -> None:
    producer = kafka_producer(settings.kafka_bootstrap_servers)
    for record in records:
        send(producer, topic, orjson.dumps(record), record["decision_id"].encode())
    producer.flush(30)


def test_outcomes_reach_the_bandit_once_each(own_settings, stack):
    clickstream = SHOPPER_STREAMS["clickstream"]
    ensure_topics(own_settings, [DECISION_LOG, clickstream])
    arm = BanditArm(own_settings)
    arm.state = BanditState.start(["SKU-000001", "SKU-000002"], ["books", "toys"], [5.0, 5.0], [10.0, 10.0],
                                  np.array([[9.99, 10.99], [9.99, 10.99]]), np.full((2, 2), 0.2))
    decisions = [decision_record(decision_id=f"d{i}", endpoint="pricing", sku=f"SKU-00000{1 + i % 2}",
                                 price_usd=[9.99, 10.99, 12.5][i % 3],
                                 event_time=(T0 + timedelta(seconds=i)).isoformat()) for i in range(6)]
    carts = [{"decision_id": d, "event_type": "add_to_cart", "event_time": T0.isoformat()} for d in ("d0", "d1", "d4")]
    views = [{"decision_id": f"d{i}", "event_type": "view", "event_time": T0.isoformat()} for i in range(6)]
    stream = OutcomeStream(own_settings, arm, flush_s=1.0).start()
    try:
        produce(own_settings, clickstream.topic(own_settings), carts[:1] + views)  # before their decisions
        produce(own_settings, DECISION_LOG.topic(own_settings), decisions + decisions[:2])  # two delivered twice
        deadline = time.monotonic() + 60
        while stream.observed < 4 and time.monotonic() < deadline:
            time.sleep(0.5)
        produce(own_settings, clickstream.topic(own_settings), carts + carts[:1])  # late, and d0's again
        deadline = time.monotonic() + 60
        while arm.state.carts.sum() < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2.5)  # two more flushes: nothing more may arrive
    finally:
        stream.close()
    # d2 and d5 were priced at 12.5, off the grid: not the bandit's outcomes. SKU-000001: d0 (9.99, cart),
    # d4 (10.99, cart); SKU-000002: d1 (10.99, cart), d3 (9.99).
    np.testing.assert_array_equal(arm.state.views, [[1, 1], [1, 1]])
    np.testing.assert_array_equal(arm.state.carts, [[1, 1], [0, 1]])
    assert BanditState.load(arm.path).views.sum() == 4  # saved with the offsets committed
