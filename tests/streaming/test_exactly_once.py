"""Integration: exactly once through crashes — the streaming service killed -9 mid-run, the broker restarted."""

import os
import random
import signal
import threading
import time

import pytest
from pyspark.sql import functions as F
from streaming_helpers import bronze_ids, dead_letters, run_available_now

from lakehouse.delta import delta_exists, read_delta
from lakehouse.settings import Settings
from lakehouse.streams import DEAD_LETTER, SHOPPER_STREAMS
from orchestration.stack import Stack
from streaming.producer import produce
from tests.support import free_port

pytestmark = pytest.mark.integration

KILLS = 3


def _landed(spark, settings: Settings) -> int:
    locations = [s.bronze.location(settings) for s in SHOPPER_STREAMS.values()] + [DEAD_LETTER.location(settings)]
    return sum(read_delta(spark, loc).count() for loc in locations if delta_exists(spark, loc))


def _wait(condition, timeout_s: float, what: str, log_file) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}; see {log_file}"
        time.sleep(0.5)


def test_killed_nine_times_three_the_stream_neither_loses_nor_duplicates(spark, own_settings):
    # Small micro-batches every second, so that every kill lands while batches are being written.
    own = own_settings.model_copy(update={"streaming_trigger_interval": "1 second",
                                          "streaming_max_offsets_per_trigger": 60})
    streaming = Stack(own, only=["streaming"])
    service = streaming.services[0]
    produced = {}
    producer = threading.Thread(target=lambda: produced.update(
        result=produce(own, count=900, rate=200, malformed_count=12)))
    producer.start()
    try:
        streaming.up()
        for _ in range(KILLS):
            before = _landed(spark, own)
            _wait(lambda before=before: _landed(spark, own) > before, 120, "a micro-batch to commit",
                  streaming.log_file(service))
            time.sleep(random.uniform(0.0, 1.0))
            pid = streaming.pid(service)
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)  # our child: reap it, or it lingers as a zombie
            _wait(lambda: streaming.pid(service) is None, 30, "the killed process to go", streaming.log_file(service))
            streaming.up()
        producer.join(timeout=120)
        result = produced["result"]
        _wait(lambda: _landed(spark, own) >= result.total, 180, "every message to land", streaming.log_file(service))
    finally:
        streaming.down()
        producer.join(timeout=60)

    assert streaming.pid(service) is None
    landed = bronze_ids(spark, own, "clickstream") + bronze_ids(spark, own, "transactions")
    assert len(landed) == len(set(landed)) == 900
    assert sorted(landed) == sorted(result.event_ids)
    dead = dead_letters(spark, own)
    assert dead.count() == dead.select("_kafka_topic", "_kafka_partition", "_kafka_offset").distinct().count() == 12


def test_a_broker_restart_while_producing_loses_nothing(spark, tmp_path, settings):
    own = Settings(state_dir=tmp_path, jars_dir=settings.jars_dir,
                   kafka_bootstrap_servers=f"127.0.0.1:{free_port()}", kafka_controller_port=free_port(),
                   kafka_topic_prefix="restart")
    broker = Stack(own, only=["kafka"])
    broker.up()
    produced = {}
    try:
        producer = threading.Thread(target=lambda: produced.update(result=produce(own, count=600, rate=100)))
        producer.start()
        time.sleep(2)
        broker.down()
        time.sleep(2)
        broker.up()
        producer.join(timeout=240)
        assert not producer.is_alive(), "the producer did not finish"
        run_available_now(spark, own)
        landed = bronze_ids(spark, own, "clickstream") + bronze_ids(spark, own, "transactions")
    finally:
        broker.down()

    assert len(landed) == len(set(landed)) == 600
    assert sorted(landed) == sorted(produced["result"].event_ids)
    assert read_delta(spark, DEAD_LETTER.location(own)).where(F.col("_kafka_topic").startswith("restart.")).count() == 0
