"""Integration: producer -> real Kafka broker -> bronze queries; dead letters, batch limits, checkpoints."""

import json
import shutil

import pytest
from delta.tables import DeltaTable
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual
from streaming_helpers import bronze_ids, dead_letters, run_available_now

from lakehouse.kafka import ensure_topics, kafka_producer, send
from lakehouse.streams import DEAD_LETTER, SHOPPER_STREAMS
from streaming.bronze import StreamOptions, start
from streaming.checkpoints import CheckpointError, checkpoint_folder
from streaming.producer import produce

pytestmark = pytest.mark.integration


# The dead-letter reason of each kind of broken message the producer makes.
REASON = {"bad_json": "malformed_json", "wrong_type": "type_mismatch", "missing_required": "missing_required"}


def test_valid_messages_land_and_malformed_ones_go_to_the_dead_letter_table(spark, own_settings):
    produced = produce(own_settings, count=400, malformed_count=30)

    run_available_now(spark, own_settings)

    landed = bronze_ids(spark, own_settings, "clickstream") + bronze_ids(spark, own_settings, "transactions")
    assert sorted(landed) == sorted(produced.event_ids)
    for source in SHOPPER_STREAMS:
        assert len(bronze_ids(spark, own_settings, source)) == produced.sent[source]
    dead = dead_letters(spark, own_settings)
    assert produced.malformed == {"bad_json": 10, "wrong_type": 10, "missing_required": 10}
    assertDataFrameEqual(dead.groupBy(F.split("reason", ":")[0].alias("reason")).count(),
                         [Row(reason=REASON[kind], count=n) for kind, n in produced.malformed.items()])
    assert dead.where(F.col("raw").isNull() | F.col("_kafka_offset").isNull()).count() == 0
    # Statistics only on what silver promotion filters the streamed rows by; log checkpoints seldom.
    location = SHOPPER_STREAMS["clickstream"].bronze.location(own_settings)
    properties = dict(spark.sql(f"SHOW TBLPROPERTIES delta.`{location}`").collect())
    assert properties["delta.dataSkippingStatsColumns"] == "_ingested_at"
    assert properties["delta.checkpointInterval"] == "100"


def test_no_micro_batch_exceeds_max_offsets_per_trigger(spark, own_settings):
    produced = produce(own_settings, count=450, sources=["clickstream"])

    [query] = run_available_now(spark, own_settings, sources=["clickstream"], max_offsets_per_trigger=100)

    sizes = [p["numInputRows"] for p in query.recentProgress if p["numInputRows"]]
    assert max(sizes) <= 100 and sum(sizes) == 450 and len(sizes) >= 5
    assert sorted(bronze_ids(spark, own_settings, "clickstream")) == sorted(produced.event_ids)
    # The Delta commits agree: one per micro-batch, none larger than the limit.
    commits = (DeltaTable.forPath(spark, SHOPPER_STREAMS["clickstream"].bronze.location(own_settings)).history()
               .where(F.col("userMetadata").isNotNull())
               .select(F.col("operationMetrics")["numOutputRows"].cast("int").alias("rows")).collect())
    assert len(commits) == len(sizes) and max(r.rows for r in commits) <= 100


def test_a_missing_or_damaged_checkpoint_is_refused_and_a_deliberate_reset_resumes_exactly(spark, own_settings):
    first = produce(own_settings, count=60, sources=["transactions"])
    run_available_now(spark, own_settings, sources=["transactions"])
    folder = checkpoint_folder(own_settings, SHOPPER_STREAMS["transactions"])
    options = StreamOptions("1 second", None, trigger="available-now")

    kept = folder.with_name("kept")
    shutil.move(folder, kept)
    with pytest.raises(CheckpointError, match=rf"checkpoint {folder} is missing or empty.*--reset-checkpoint"):
        start(spark, own_settings, [SHOPPER_STREAMS["transactions"]], options)
    folder.mkdir()
    with pytest.raises(CheckpointError, match="missing or empty"):
        start(spark, own_settings, [SHOPPER_STREAMS["transactions"]], options)
    shutil.rmtree(folder)
    shutil.move(kept, folder)
    (folder / "metadata").write_text("{not json")
    with pytest.raises(CheckpointError, match=rf"checkpoint {folder} is damaged \(metadata unreadable"):
        start(spark, own_settings, [SHOPPER_STREAMS["transactions"]], options)

    second = produce(own_settings, count=40, sources=["transactions"])
    run_available_now(spark, own_settings, sources=["transactions"], reset_checkpoint=True)

    landed = bronze_ids(spark, own_settings, "transactions")
    assert len(landed) == len(set(landed)) == 100
    assert sorted(landed) == sorted(first.event_ids + second.event_ids)
    assert json.loads((folder / "metadata").read_text())["id"]  # a new, readable checkpoint


def test_hostile_bytes_from_an_independent_client_are_dead_letters_and_every_table_stays_readable(
        spark, own_settings):
    """Random bytes, truncated UTF-8, NUL, 1 MB, empty, a tombstone, a JSON array, deep nesting and a key that
    is not UTF-8 through the real broker: all counted, none lost, and Arrow-based readers read every table."""
    import duckdb
    from deltalake import DeltaTable

    stream = SHOPPER_STREAMS["clickstream"]
    ensure_topics(own_settings, [stream])
    valid = produce(own_settings, count=20)  # both shopper topics, this test's prefix
    hostile = [(b"k", b"\xff\xfe\x00\x81garbage"), (b"k", '{"event_id": "\u00e9'.encode()[:-1]),
               (b"k", b'{"event_id": "a\x00b"}'), (b"k", b"x" * 1_000_000), (b"k", b""), (b"k", None),
               (b"k", b"[1, 2]"), (b"k", b"[" * 3000 + b"]" * 3000), (b"\xff\x80", b"\xc3\x28")]
    # librdkafka's own limit is 1,000,000 bytes; the broker's (1 MiB and a record batch header) is the real one.
    producer = kafka_producer(own_settings.kafka_bootstrap_servers, **{"message.max.bytes": 1_048_588})
    for key, value in hostile:
        send(producer, stream.topic(own_settings), value, key)
    assert producer.flush(60) == 0

    run_available_now(spark, own_settings)

    dead = dead_letters(spark, own_settings)
    assertDataFrameEqual(dead.groupBy("reason", "raw_encoding").count(), [
        Row(reason="not_utf8", raw_encoding="base64", count=3),
        Row(reason="malformed_json", raw_encoding=None, count=5), Row(reason="no_value", raw_encoding=None, count=1)])
    assert dead.where(F.col("_kafka_key") == "base64:/4A=").count() == 1
    landed = len(bronze_ids(spark, own_settings, "clickstream")) + len(bronze_ids(spark, own_settings, "transactions"))
    assert landed + dead.count() == sum(valid.sent.values()) + len(hostile)  # nothing lost
    for location in (DEAD_LETTER.location(own_settings), stream.bronze.location(own_settings)):
        delta = DeltaTable(location)
        rows = len(delta.to_pandas())  # every string decoded
        with duckdb.connect() as con:
            assert len(con.sql(f"SELECT * FROM read_parquet({delta.file_uris()!r})").fetchall()) == rows
        assert rows == spark.read.format("delta").load(location).count()
