"""Exactly once without Delta's transaction lookup: a replayed batch's writes are found by their commits."""

import os
import subprocess
import sys
import time
from datetime import datetime

from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, StringType, StructField, StructType

from lakehouse.delta import read_delta
from lakehouse.settings import Settings
from lakehouse.streams import DEAD_LETTER, StreamSource
from streaming.bronze import QUERY_ID_PROPERTY, BronzeBatchWriter
from streaming.checkpoints import UnfinishedBatch, batch_committed, exclusive_checkpoints, unfinished_batch

SOURCE = StreamSource("transactions", StructType([StructField("event_id", StringType()),
                                                  StructField("quantity", IntegerType())]), key="order_id",
                      required=("event_id",))
KAFKA = "key binary, value binary, topic string, partition int, offset long, timestamp timestamp, timestampType int"
BAD = '{"event_id": "bad", "quantity": "two"}'


def _messages(spark, first_offset: int, values: list[str]):
    return spark.createDataFrame([(b"o-1", v.encode(), "t.transactions", 0, first_offset + i, datetime(2026, 11, 2), 0)
                                  for i, v in enumerate(values)], KAFKA)


def _run(spark, writer: BronzeBatchWriter, query_id: str, batch: int, messages) -> None:
    """Call the writer as Spark does, on a thread that carries the query's id."""
    spark.sparkContext.setLocalProperty(QUERY_ID_PROPERTY, query_id)
    try:
        writer(messages, batch)
    finally:
        spark.sparkContext.setLocalProperty(QUERY_ID_PROPERTY, None)


def test_the_unfinished_batch_is_the_last_planned_one_without_a_commit(tmp_path):
    assert unfinished_batch(tmp_path / "none") is None
    for name in ("offsets/0", "offsets/1", "offsets/2", "offsets/.2.crc", "commits/0", "commits/1"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("v1")
    unfinished = unfinished_batch(tmp_path)
    assert unfinished == UnfinishedBatch(2, int((tmp_path / "offsets/2").stat().st_mtime * 1000))
    (tmp_path / "commits/2").write_text("v1")
    assert unfinished_batch(tmp_path) is None


def test_a_replayed_batch_writes_only_what_its_crashed_run_did_not(spark, tmp_path, settings):
    own = Settings(state_dir=tmp_path, jars_dir=settings.jars_dir)
    batch0 = _messages(spark, 0, ['{"event_id": "e1", "quantity": 1}', BAD])
    batch1 = _messages(spark, 2, ['{"event_id": "e2", "quantity": 2}', BAD])
    crashed = BronzeBatchWriter(own, SOURCE, "delta")
    _run(spark, crashed, "q1", 0, batch0)
    # Batch 1 crashed between its two writes: bronze has it, the dead-letter table does not (the same
    # tables as a run of batch 1 without its bad message). Another query writes dead letters meanwhile.
    _run(spark, crashed, "q1", 1, batch1.where(F.col("offset") == 2))
    _run(spark, BronzeBatchWriter(own, SOURCE, "delta"), "q2", 0, _messages(spark, 100, [BAD]))
    planned_at_ms = int(time.time() * 1000) - 60_000

    unfinished = UnfinishedBatch(1, planned_at_ms)
    assert batch_committed(spark, SOURCE.bronze.location(own), "q1", unfinished)
    assert not batch_committed(spark, DEAD_LETTER.location(own), "q1", unfinished)
    assert not batch_committed(spark, DEAD_LETTER.location(own), "q3", UnfinishedBatch(0, planned_at_ms))

    restarted = BronzeBatchWriter(own, SOURCE, "delta", unfinished)
    _run(spark, restarted, "q1", 1, batch1)
    _run(spark, restarted, "q1", 2, _messages(spark, 4, ['{"event_id": "e3", "quantity": 3}']))

    bronze = read_delta(spark, SOURCE.bronze.location(own))
    assert sorted((r.event_id, r._kafka_offset) for r in bronze.collect()) == [("e1", 0), ("e2", 2), ("e3", 4)]
    dead = read_delta(spark, DEAD_LETTER.location(own))
    assert sorted((r._batch_id, r._kafka_offset) for r in dead.collect()) == [("q1/0", 1), ("q1/1", 3), ("q2/0", 100)]


def test_a_second_streaming_job_on_the_same_checkpoints_is_refused(tmp_path):
    own = Settings(state_dir=tmp_path)
    with exclusive_checkpoints(own):
        second = subprocess.run([sys.executable, "-m", "streaming.bronze"], capture_output=True, text=True,
                                env={**os.environ, "LAKEHOUSE_STATE_DIR": str(tmp_path)}, timeout=120)
    assert second.returncode == 2
    assert f"error: another streaming job is using the checkpoints in {own.checkpoints_dir}" in second.stderr
    with exclusive_checkpoints(own):  # released with its holder
        pass
