"""Shipping estimates with the carriers' quote services (the simulator's): each option names the source of its
carrier price, and a slow or failing carrier costs the estimate no more than the budget. First on the true rate
cards in memory (`estimate_shipping`), then through `/v1/shipping/estimate` on a simulated lake."""

import asyncio
import time
from datetime import UTC, date, datetime
from types import SimpleNamespace

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.carrier_quotes import CarrierQuotes, QuotePolicy
from serving.experiments import Assignment
from serving.gateway import initial_key_file
from serving.metrics import ServingMetrics
from serving.online_features import FeatureSnapshot, Product, Zone, rate_cards
from serving.routes import ShippingRequest, estimate_shipping
from simulator.carriers import CarrierServices, Faults, simulation_config, true_rate_cards
from simulator.config import SimConfig
from simulator.sources import _rate_card_rows

TODAY = date(2026, 9, 1)
RULE_BASED = Assignment(None, None, "rule_based", None, "no_experiment")


def true_snapshot(config: SimConfig) -> FeatureSnapshot:
    """The simulation's first rate sheet as silver holds it (USD), one product, the 021 prefix in zone 1."""
    sheet = _rate_card_rows(true_rate_cards(config)[0], config.start_date).rename(columns={
        "base_rate": "base_rate_usd", "per_kg_over": "per_kg_over_usd", "remote_surcharge": "remote_surcharge_usd"})
    sheet["effective_from"] = config.start_date
    product = Product("SKU-000001", "kitchen", 1.5, 30.0, 20.0, 15.0, None, 20.0)
    return FeatureSnapshot(versions={}, day=TODAY, built_at=datetime.now(UTC), products={product.sku: product},
                           rate_cards=rate_cards(pa.Table.from_pandas(sheet), TODAY), zones={"021": Zone(1, False)})


def test_estimates_name_each_options_source_through_faults():
    config = SimConfig()
    snapshot = true_snapshot(config)
    # A budget wider than the default's 150 ms, so that a loaded machine's scheduling does not turn a 503 into a
    # deadline; the slow carrier still answers far beyond it.
    policy = QuotePolicy(budget_s=0.5, timeout_s=0.3, retries=1, breaker_failures=5)
    request = ShippingRequest(items=[{"sku": "SKU-000001", "quantity": 2}], postal_code="02139",
                              service_level="standard")
    heavier = request.model_copy(update={"items": [request.items[0].model_copy(update={"quantity": 3})]})

    with CarrierServices(config, today=TODAY) as services:
        async def go():
            serving = SimpleNamespace(carriers=CarrierQuotes(services.urls, policy), metrics=ServingMetrics())
            try:
                healthy = await estimate_shipping(serving, request, snapshot, RULE_BASED)
                services.set_faults("northpost", Faults(latency_ms=2000))
                services.set_faults("rapidparcel", Faults(fault="error"))
                started = time.perf_counter()
                faulty = await estimate_shipping(serving, request, snapshot, RULE_BASED)
                seconds = time.perf_counter() - started
                uncached = await estimate_shipping(serving, heavier, snapshot, RULE_BASED)
                return healthy, faulty, seconds, uncached
            finally:
                await serving.carriers.aclose()

        healthy, faulty, seconds, uncached = asyncio.run(go())

    def by_carrier(answer):
        return {o.carrier: (o.source, o.source_reason, o.quote_usd) for o in answer.options}

    cards = {o.carrier: o.rate_card_usd for o in healthy.options}
    # The carriers quote from the true rate cards the sheet was written from: the rate card, to the cent.
    assert by_carrier(healthy) == {c: ("quote", None, cards[c]) for c in cards}
    assert all(o.estimate_usd == o.quote_usd for o in healthy.options)  # rule-based: the carrier's price
    northpost = by_carrier(faulty)["northpost"]
    assert northpost in (("cache", "timeout", cards["northpost"]), ("cache", "deadline", cards["northpost"]))
    assert by_carrier(faulty)["rapidparcel"] == ("cache", "http 503", cards["rapidparcel"])
    assert by_carrier(faulty)["bluefreight"] == ("quote", None, cards["bluefreight"])
    assert seconds < policy.budget_s + 0.75  # northpost alone would take 2 s (slack: a loaded 2-core machine)
    # A parcel never quoted before has no cache: the rate card.
    assert by_carrier(uncached)["rapidparcel"][:2] == ("rate_card", "http 503")
    assert by_carrier(uncached)["rapidparcel"][2] == {o.carrier: o.rate_card_usd for o in uncached.options}[
        "rapidparcel"]


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


@pytest.mark.integration
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
