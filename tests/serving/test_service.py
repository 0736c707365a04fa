"""Integration: the API as a service of the native stack (a real uvicorn process on a free port)."""

import json
import threading
import time
import urllib.request
import uuid

import httpx
import pytest

from lakehouse.delta import read_delta
from lakehouse.streams import DECISION_LOG
from lakehouse.tables import table
from orchestration.stack import Stack
from serving.gateway import initial_key_file
from tests.support import consume, free_port

pytestmark = pytest.mark.integration


def get(url: str, key: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"X-API-Key": key} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_stack_runs_the_api_and_stops_it_cleanly(own_settings, settings, stack):
    api = own_settings.model_copy(update={"api_port": free_port(),
                                          "mlflow_tracking_uri": settings.mlflow_tracking_uri})
    service = Stack(api, only=["serving"])
    url = f"http://127.0.0.1:{api.api_port}"
    try:
        service.up()
        assert get(f"{url}/healthz") == (200, '{"status":"ok"}')
        assert initial_key_file(api).read_text().startswith("lh_")
        status, body = get(f"{url}/metrics")
        assert status == 200
        # The stack's health checks and this test asked /healthz: at least twice.
        [healthz] = [line for line in body.splitlines()
                     if line.startswith('lakehouse_api_requests_total{endpoint="/healthz",method="GET",status="200"}')]
        assert float(healthz.split()[-1]) >= 2
        [row] = service.status()
        assert (row["service"], row["healthy"], row["port"]) == ("serving", True, api.api_port)
    finally:
        service.down()

    log = (api.logs_dir / "serving.log").read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    messages = [line["msg"] for line in lines]
    assert "decision log closed" in messages  # the lifespan's shutdown ran: SIGTERM was a clean stop
    assert "online features loaded" in messages
    assert not any(word in log for word in ("Traceback", "Aborted", "panicked", "Fatal Python error"))
    assert service.status()[0]["pid"] is None


def test_a_stop_under_load_sends_every_answered_decision_to_kafka(simulated_lake, spark, monkeypatch):
    """SIGTERM while 8 clients ask for prices as fast as they can: uvicorn finishes the requests in flight, then
    the decision log sends what its producer holds. Every answered decision is in Kafka; none is dropped."""
    lake, _ = simulated_lake
    api = lake.model_copy(update={"api_port": free_port(), "kafka_topic_prefix": f"test-{uuid.uuid4().hex[:8]}"})
    monkeypatch.setenv("LAKEHOUSE_API_RATE_LIMIT_PER_S", "1000000")
    monkeypatch.setenv("LAKEHOUSE_API_RATE_LIMIT_BURST", "1000000")
    service = Stack(api, only=["serving"])
    url, answered, shoppers, stop = f"http://127.0.0.1:{api.api_port}", [], [], threading.Event()
    sku = read_delta(spark, table("gold.prices").location(lake)).select("sku").first().sku

    def shopper() -> None:
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=10) as client:
            while not stop.is_set():
                try:
                    answer = client.post("/v1/prices", json={"sku": sku})
                except httpx.HTTPError:
                    return  # the server went away mid-request: that decision may or may not exist
                if answer.status_code == 200:
                    answered.append(answer.json()["decision_id"])

    try:
        service.up()
        key = initial_key_file(api).read_text().strip()
        deadline = time.monotonic() + 120  # models load in the background
        while get(f"{url}/readyz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        shoppers += [threading.Thread(target=shopper) for _ in range(8)]
        for thread in shoppers:
            thread.start()
        time.sleep(3)
    finally:
        service.down()
        stop.set()
    for thread in shoppers:
        thread.join(30)

    lines = [json.loads(line) for line in (api.logs_dir / "serving.log").read_text().splitlines()
             if line.startswith("{")]
    [closed] = [line for line in lines if line["msg"] == "decision log closed"]
    assert closed["dropped_at_close"] == 0 and len(answered) > 100
    sent = {m.key().decode() for m in consume(api.kafka_bootstrap_servers, [DECISION_LOG.topic(api)],
                                               len(answered) + 8, timeout_s=15)}
    assert set(answered) <= sent and len(sent - set(answered)) <= 8  # cut off before the answer reached a client
