"""`/v1/shipping/estimate` with the carriers' quote services (the simulator's) on a simulated lake: each option
names the source of its carrier price, and a slow or failing carrier costs the estimate no more than the budget."""

import time

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.gateway import initial_key_file
from simulator.carriers import CarrierServices, Faults, simulation_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def carriers(simulated_lake):
    with CarrierServices(simulation_config(simulated_lake[0].truth_dir)) as services:
        yield services


@pytest.fixture(scope="module")
def client(simulated_lake, carriers):
    lake = simulated_lake[0].model_copy(update={"carrier_quote_urls": carriers.urls})
    with TestClient(create_app(lake)) as client:
        client.headers["X-API-Key"] = initial_key_file(lake).read_text().strip()
        deadline = time.monotonic() + 120
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(1)
        yield client


def estimate(client, sku: str) -> tuple[dict, float]:
    started = time.perf_counter()
    answer = client.post("/v1/shipping/estimate", json={"items": [{"sku": sku, "quantity": 2}],
                                                        "postal_code": "02139", "service_level": "standard"})
    assert answer.status_code == 200, answer.text
    return answer.json(), time.perf_counter() - started


def sources(answer: dict) -> dict[str, tuple]:
    return {o["carrier"]: (o["source"], o["source_reason"]) for o in answer["options"]}


def test_options_name_their_source_and_faults_fall_back_within_the_budget(client, carriers):
    sku = next(iter(client.app.state.serving.features.snapshot.products))
    healthy, _ = estimate(client, sku)
    assert sources(healthy) == {c: ("quote", None) for c in ("northpost", "rapidparcel", "bluefreight")}
    # The carriers answer from the true rate cards the lake's rate sheets were written from: the same prices.
    for option in healthy["options"]:
        assert option["quote_usd"] == pytest.approx(option["rate_card_usd"], abs=0.011)

    carriers.set_faults("northpost", Faults(latency_ms=2000))
    carriers.set_faults("rapidparcel", Faults(fault="error"))
    try:
        faulty, seconds = estimate(client, sku)
    finally:
        carriers.set_faults("northpost", Faults())
        carriers.set_faults("rapidparcel", Faults())
    by_carrier = {o["carrier"]: o for o in faulty["options"]}
    quoted = {o["carrier"]: o["quote_usd"] for o in healthy["options"]}
    assert sources(faulty)["bluefreight"] == ("quote", None)
    assert sources(faulty)["rapidparcel"] == ("cache", "http 503")  # the quote of the first estimate
    assert by_carrier["rapidparcel"]["quote_usd"] == quoted["rapidparcel"]
    assert sources(faulty)["northpost"] in (("cache", "timeout"), ("cache", "deadline"))
    assert seconds < 1.0  # the budget is 150 ms; northpost alone would take 2 s
