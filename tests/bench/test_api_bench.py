"""The API benchmark's pieces: request encoding, the load generator, summaries, records, the no-op route.

The full benchmark (lake, servers, minutes of load) is not run here: `make bench BENCH_ARGS='--only api'`.
"""

import asyncio
import json
from collections import Counter

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from bench.api import (
    NOOP_PATH,
    Sample,
    add_noop_route,
    customers_on_variant,
    http_request,
    latest_pricing_features,
    load,
    mlflow_payload,
    records,
    server_counters,
    summarize,
)
from serving.app import create_app
from serving.experiments import Experiments, Subject
from training.demand import INPUT_COLUMNS


def test_a_request_is_a_keep_alive_post_with_its_json_body():
    assert http_request("/v1/prices", {"sku": "SKU-000001"}, {"X-API-Key": "lh_k"}) == (
        b"POST /v1/prices HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 20\r\nX-API-Key: lh_k\r\n\r\n"
        b'{"sku":"SKU-000001"}')


def test_the_pool_is_the_latest_row_of_every_sku_with_a_unit_cost():
    features = pd.DataFrame({
        "sku": ["SKU-000002", "SKU-000001", "SKU-000001", "SKU-000003", "SKU-000003"],
        "as_of_date": pd.to_datetime(["2026-08-02", "2026-08-02", "2026-08-01", "2026-08-01", "2026-08-02"]),
        "unit_cost_usd": [5.0, 2.0, 1.0, 3.0, None],
    })
    # SKU-000003's latest row has no unit cost: the API does not price it, even though an older row had one.
    expected = pd.DataFrame({"sku": ["SKU-000001", "SKU-000002"],
                             "as_of_date": pd.to_datetime(["2026-08-02", "2026-08-02"]),
                             "unit_cost_usd": [2.0, 5.0]})
    pd.testing.assert_frame_equal(latest_pricing_features(features), expected)


def test_summary_of_a_sample():
    sample = Sample(latencies_s=[ms / 1000 for ms in range(1, 101)], statuses=Counter({200: 98, 503: 2}),
                    seconds=2.0, rounds_rps=[50.0], wall_s=4.0, client_cpu_s=1.0, server_cpu_s=3.0)
    assert summarize(sample) == {
        "requests": 100, "seconds": 2.0, "rps": 50.0, "p50_ms": 50.5, "p90_ms": 90.1, "p99_ms": 99.01,
        "max_ms": 100.0, "rounds_rps": [50.0], "statuses": {"200": 98, "503": 2}, "errors": 2,
        "client_cpu_share": 0.25, "server_cpu_share": 0.75}


def test_an_empty_sample_is_an_error():
    with pytest.raises(ValueError, match="no request completed"):
        summarize(Sample(seconds=1.0))


def _summary(rps: float, p99_ms: float, errors: int = 0) -> dict:
    return {"rps": rps, "p99_ms": p99_ms, "errors": errors}


SENT = {"broker": "kafka at 127.0.0.1:9092", "sent": 1000.0, "dropped": {}, "unsent": 0.0}


def test_records_compare_the_price_endpoint_with_both_references():
    price, noop, served = _summary(900, 3.0), _summary(1000, 2.0), _summary(60, 40.0)
    by_noop, p99, by_mlflow = records(price, noop, served, {"connections": 8}, SENT)
    assert (by_noop.name, by_noop.value, by_noop.reference_value, by_noop.ratio, by_noop.meets_target) == (
        "api_price_single_rps", 900, 1000, 0.9, True)
    assert (p99.name, p99.unit, p99.value, p99.reference_value, p99.ratio, p99.meets_target) == (
        "api_price_single_p99", "ms p99", 3.0, 2.0, 1.5, True)
    assert (by_mlflow.name, by_mlflow.ratio, by_mlflow.meets_target) == (
        "api_price_single_rps_vs_mlflow_serve", 15.0, True)
    assert by_noop.details == {"connections": 8, "price": price, "noop": noop, "mlflow_serve": served,
                               "decision_log": SENT}
    assert by_noop.target == "ratio >= 0.8, no error answer, every decision record sent to Kafka"


def test_records_miss_their_targets_when_slow_when_an_answer_failed_or_a_decision_record_was_not_sent():
    slow = records(_summary(700, 3.1), _summary(1000, 2.0), _summary(50, 40.0), {}, SENT)
    assert [(r.ratio, r.meets_target) for r in slow] == [(0.7, False), (1.55, False), (14.0, False)]
    failed = records(_summary(1000, 2.0), _summary(1000, 2.0), _summary(10, 40.0, errors=1), {}, SENT)
    assert [r.meets_target for r in failed] == [True, True, False]
    failed = records(_summary(1000, 2.0, errors=1), _summary(1000, 2.0), _summary(10, 40.0), {}, SENT)
    assert [r.meets_target for r in failed] == [False, False, False]
    for lost in ({**SENT, "dropped": {"kafka_unavailable": 3.0}}, {**SENT, "unsent": 2.0}):
        assert [r.meets_target for r in records(_summary(1000, 2.0), _summary(1000, 2.0), _summary(10, 40.0), {},
                                                lost)] == [False, False, True]


async def _serve_and_load(requests: list[bytes], connections: int) -> tuple[Sample, list[bytes]]:
    """A tiny HTTP server (200 for /ok, 503 otherwise) under the load generator; returns the sample and
    the first body each connection sent."""
    first_bodies = []

    async def handle(reader, writer):
        first = True
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            body = await reader.readexactly(length)
            if first:
                first_bodies.append(body)
                first = False
            status = b"200 OK" if head.startswith(b"POST /ok ") else b"503 Service Unavailable"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\n\r\n{}")

    async def serve_until_closed(reader, writer):
        try:
            await handle(reader, writer)
        except asyncio.IncompleteReadError:
            writer.close()

    server = await asyncio.start_server(serve_until_closed, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sample = Sample()
    async with server:
        await load(port, requests, warmup_s=0.05, duration_s=0.2, sample=sample, connections=connections)
    return sample, first_bodies


def test_the_load_generator_counts_every_answer_of_the_window_by_status():
    requests = [http_request("/ok", {"n": n}) for n in range(4)]
    sample, first_bodies = asyncio.run(_serve_and_load(requests, connections=2))
    # Connection i starts at request i * 4 // 2.
    assert sorted(json.loads(b)["n"] for b in first_bodies) == [0, 2]
    assert set(sample.statuses) == {200}
    assert sum(sample.statuses.values()) == len(sample.latencies_s) > 0
    assert sample.seconds == 0.2
    assert sample.rounds_rps == [round(len(sample.latencies_s) / 0.2, 1)]


def test_the_load_generator_counts_error_answers():
    sample, _ = asyncio.run(_serve_and_load([http_request("/ok", {}), http_request("/busy", {})], connections=1))
    # One connection alternates the two requests: the halves differ by at most one.
    assert set(sample.statuses) == {200, 503}
    assert abs(sample.statuses[200] - sample.statuses[503]) <= 1
    assert summarize(sample)["errors"] == sample.statuses[503]


def test_the_noop_route_runs_through_the_app_middleware_and_is_not_in_the_production_app(settings):
    body = {"sku": "SKU-000001", "customer": {"customer_id": "C-1"}}
    assert TestClient(create_app(settings)).post(NOOP_PATH, json=body).status_code == 404
    client = TestClient(add_noop_route(create_app(settings)))  # no lifespan: the no-op route needs no component
    assert client.post(NOOP_PATH, json=body).json() == {"status": "ok"}
    assert client.post(NOOP_PATH, json={"sku": "nope"}).status_code == 422
    counted = server_counters(client.get("/metrics").text)["requests"]
    assert (counted[f"POST {NOOP_PATH} 200"], counted[f"POST {NOOP_PATH} 422"]) == (1.0, 1.0)


def test_server_counters_read_requests_and_the_decision_log():
    text = "\n".join([
        "# TYPE lakehouse_api_requests counter",
        'lakehouse_api_requests_total{endpoint="/v1/prices",method="POST",status="200"} 1234.0',
        "# TYPE lakehouse_decision_log_sent counter",
        "lakehouse_decision_log_sent_total 0.0",
        "# TYPE lakehouse_decision_log_dropped counter",
        'lakehouse_decision_log_dropped_total{reason="kafka_unavailable"} 1230.0',
        'lakehouse_decision_log_dropped_total{reason="queue_full"} 4.0',
        "# TYPE lakehouse_decision_log_queue_depth gauge",
        "lakehouse_decision_log_queue_depth 0.0", ""])
    assert server_counters(text) == {
        "requests": {"POST /v1/prices 200": 1234.0}, "decision_log_sent": 0.0,
        "decision_log_dropped": {"kafka_unavailable": 1230.0, "queue_full": 4.0}, "decision_log_queue_depth": 0.0}


def test_the_mlflow_payload_is_one_row_of_the_pyfunc_input_columns():
    features = {name: float(i) for i, name in enumerate(INPUT_COLUMNS[:-1])} | {"sku": "SKU-000001",
                                                                                "category": "toys", "extra": 1}
    payload = mlflow_payload(features, 12.5)
    assert payload["dataframe_split"]["columns"] == list(INPUT_COLUMNS)
    assert payload["dataframe_split"]["data"] == [[features[c] for c in INPUT_COLUMNS[:-1]] + [12.5]]


def test_customers_are_those_the_experiment_answers_with_the_model(settings, tmp_path):
    customers = customers_on_variant(settings.api_experiments_file, 5)
    experiments = Experiments(settings.api_experiments_file)
    assert len(set(customers)) == 5
    assert {experiments.assign("pricing", Subject(customer_id=c)).variant for c in customers} == {"model"}
    rules_only = tmp_path / "experiments.yaml"
    rules_only.write_text(
        "experiments:\n  - name: rules\n    endpoint: pricing\n    enabled: true\n    unit: customer_id\n"
        "    salt: s\n    variants:\n      - {name: rules, weight: 100, strategy: rule_based}\n")
    with pytest.raises(ValueError, match="gives no customer the model strategy"):
        customers_on_variant(rules_only, 1)
