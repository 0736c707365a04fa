"""Integration: decision records -> the real Kafka broker -> bronze.decisions_stream -> silver.decisions."""

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehouse.delta import read_delta
from lakehouse.kafka import kafka_producer, send
from lakehouse.streams import DEAD_LETTER, DECISION_LOG
from lakehouse.tables import table
from serving.decision_log import DecisionLogger, decision_record, encode
from serving.metrics import ServingMetrics
from spark_jobs import silver as silver_job
from streaming.bronze import StreamOptions, start
from tests.support import consume

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 24, 6, 0, 0, 250000, tzinfo=UTC)


def pricing_decision(i: int, **overrides) -> dict:
    return decision_record(**{
        "decision_id": f"00000000-0000-4000-8000-{i:012d}", "event_time": (T0 + timedelta(seconds=i)).isoformat(),
        "endpoint": "pricing", "customer_id": f"C-{i:06d}", "session_id": f"S-{i}",
        "experiment": "pricing_model_vs_rules", "variant": "model", "strategy": "model",
        "model_name": "pricing_demand", "model_version": "3", "sku": f"SKU-{i:06d}",
        "request": {"sku": f"SKU-{i:06d}", "customer_id": f"C-{i:06d}"}, "response": {"price_usd": 10.0 + i},
        "price_usd": 10.0 + i, "guardrails": ["min_margin"] if i % 2 else [], "fallback": False,
        "latency_ms": 1.5 * i, **overrides})


def test_decision_records_reach_the_topic_keyed_by_decision_id_and_each_refusal_is_counted(own_settings, stack):
    metrics = ServingMetrics()
    logger = DecisionLogger(own_settings, metrics).start()
    records = [pricing_decision(i) for i in range(5)]
    unserializable = pricing_decision(5, request={"x": object()})
    too_large = pricing_decision(6, response={"blob": "x" * 2_000_000})  # over Kafka's 1 MB message limit

    for record in (*records[:2], unserializable, *records[2:], too_large):
        logger.log(record)
    logger.close()

    messages = consume(own_settings.kafka_bootstrap_servers, [DECISION_LOG.topic(own_settings)], 5)
    assert sorted((m.key().decode(), json.loads(m.value())) for m in messages) == sorted(
        (r["decision_id"], json.loads(encode(r))) for r in records)
    order = [r["decision_id"] for r in records]
    for partition in {m.partition() for m in messages}:  # in the order logged, within each partition
        keys = [m.key().decode() for m in sorted(messages, key=lambda m: m.offset()) if m.partition() == partition]
        assert keys == sorted(keys, key=order.index)
    count = metrics.registry.get_sample_value
    assert (count("lakehouse_decision_log_sent_total"),
            count("lakehouse_decision_log_dropped_total", {"reason": "unserializable"}),
            count("lakehouse_decision_log_dropped_total", {"reason": "kafka_error"})) == (5, 1, 1)


def test_decisions_land_in_bronze_and_silver_with_their_decision_id(spark, own_settings, stack, monkeypatch):
    logger = DecisionLogger(own_settings, ServingMetrics()).start()
    shipping = decision_record(decision_id="00000000-0000-4000-8000-000000000009", event_time=T0.isoformat(),
                               endpoint="shipping", session_id="S-9", experiment="free_shipping_50_vs_75",
                               variant="free_from_50", strategy="rule_based",
                               request={"postal_code": "02139"}, response={"estimate_usd": 7.25},
                               estimate_usd=7.25, fallback=True, latency_ms=0.8, charge_usd=8.0,
                               policy_version="2026-12.1+free_from_50")
    negative = pricing_decision(3, price_usd=-1.0)
    negative_charge = decision_record(decision_id="00000000-0000-4000-8000-000000000010", event_time=T0.isoformat(),
                                      endpoint="shipping", estimate_usd=7.25, charge_usd=-0.5, policy_version="x")
    for record in (pricing_decision(1, propensity=0.25), pricing_decision(2), shipping, negative, negative_charge):
        logger.log(record)
    logger.close()
    # A message without its decision_id, as a broken producer would send it: a dead letter.
    producer = kafka_producer(own_settings.kafka_bootstrap_servers)
    send(producer, DECISION_LOG.topic(own_settings), json.dumps({"endpoint": "pricing"}).encode())
    assert producer.flush(30) == 0

    [query] = start(spark, own_settings, [DECISION_LOG], StreamOptions("1 second", None, trigger="available-now"))
    assert query.awaitTermination(180) and query.exception() is None

    bronze = read_delta(spark, DECISION_LOG.bronze.location(own_settings))
    assert sorted(r.decision_id for r in bronze.collect()) == sorted(
        [f"00000000-0000-4000-8000-{i:012d}" for i in (1, 2, 3, 9, 10)])
    assert bronze.where("decision_id LIKE '%0001'").first().guardrails == '["min_margin"]'  # as sent: JSON text
    dead = read_delta(spark, DEAD_LETTER.location(own_settings)).select("source", "reason", "raw").collect()
    assert [tuple(r) for r in dead] == [("decisions", "missing_required: decision_id", '{"endpoint": "pricing"}')]

    # Silver leaves stream rows younger than the grace period for the next run; these were just written.
    monkeypatch.setattr(silver_job, "STREAM_GRACE", timedelta(0))
    [result] = silver_job.run(spark, own_settings, ["decisions"])

    assert (result.rows_read, result.promoted, result.quarantined) == (5, 3, 2)
    silver = read_delta(spark, table("silver.decisions").location(own_settings))
    assertDataFrameEqual(
        silver.select("decision_id", "event_time", "event_date", "endpoint", "variant", "strategy", "model_version",
                      "sku", "price_usd", "estimate_usd", "guardrails", "fallback", "latency_ms", "propensity",
                      "charge_usd", "policy_version",
                      F.get_json_object("request", "$.sku").alias("request_sku")),
        [Row(decision_id="00000000-0000-4000-8000-000000000001", event_time=datetime(2026, 11, 24, 6, 0, 1, 250000),
             event_date=date(2026, 11, 24), endpoint="pricing", variant="model", strategy="model", model_version="3",
             sku="SKU-000001", price_usd=11.0, estimate_usd=None, guardrails=["min_margin"], fallback=False,
             latency_ms=1.5, propensity=0.25, charge_usd=None, policy_version=None, request_sku="SKU-000001"),
         Row(decision_id="00000000-0000-4000-8000-000000000002", event_time=datetime(2026, 11, 24, 6, 0, 2, 250000),
             event_date=date(2026, 11, 24), endpoint="pricing", variant="model", strategy="model", model_version="3",
             sku="SKU-000002", price_usd=12.0, estimate_usd=None, guardrails=[], fallback=False, latency_ms=3.0,
             propensity=None, charge_usd=None, policy_version=None, request_sku="SKU-000002"),
         Row(decision_id="00000000-0000-4000-8000-000000000009", event_time=datetime(2026, 11, 24, 6, 0, 0, 250000),
             event_date=date(2026, 11, 24), endpoint="shipping", variant="free_from_50", strategy="rule_based",
             model_version=None, sku=None, price_usd=None, estimate_usd=7.25, guardrails=[], fallback=True,
             latency_ms=0.8, propensity=None, charge_usd=8.0, policy_version="2026-12.1+free_from_50",
             request_sku=None)])
    quarantined = read_delta(spark, table("silver.quarantine").location(own_settings)).collect()
    assert [(r.source, json.loads(r.record_key), r.failed_rules)
            for r in sorted(quarantined, key=lambda r: r.record_key)] == [
        ("decisions", {"decision_id": "00000000-0000-4000-8000-000000000003"}, ["price_non_negative"]),
        ("decisions", {"decision_id": "00000000-0000-4000-8000-000000000010"}, ["charge_non_negative"])]
