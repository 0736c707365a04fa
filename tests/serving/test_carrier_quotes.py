"""Carrier adapters against the simulated carriers' real HTTP quote services, with faults set."""

import asyncio
import time
from dataclasses import replace
from datetime import date

import pytest

from serving.carrier_quotes import CarrierPrice, CarrierQuotes, Parcel, QuoteFailed, QuotePolicy, parse_quote
from simulator.carriers import CarrierServices, Faults, QuoteRequest, quote, true_rate_cards
from simulator.config import SimConfig

CONFIG = SimConfig()
TODAY = date(2026, 9, 1)
RATE_CARD = 99.99  # the fallback's price, unlike any quote


def parcel(carrier: str, weight_kg: float = 1.2) -> Parcel:
    return Parcel(carrier, "standard", "02139", 1, False, weight_kg, 9000.0, RATE_CARD)


def true_price(carrier: str, weight_kg: float = 1.2) -> float:
    request = QuoteRequest(postal_code="02139", service_level="standard", weight_kg=weight_kg, volume_cm3=9000.0)
    return quote(CONFIG, true_rate_cards(CONFIG), carrier, request, TODAY).price_usd


@pytest.fixture(scope="module")
def services():
    with CarrierServices(CONFIG, today=TODAY) as running:
        yield running


@pytest.fixture
def healthy(services):
    for carrier in services.urls:
        services.set_faults(carrier, Faults())
    yield services
    for carrier in services.urls:
        services.set_faults(carrier, Faults())


# Beyond the budget: scheduling on a loaded 2-core machine (the session starts Kafka, MLflow and PostgreSQL while
# the first tests run). Far below the faults' 2 s and 60 s; `bench.carrier` measures the budget itself.
SLACK_S = 0.75
POLICY = QuotePolicy(budget_s=0.4, timeout_s=0.1, retries=1, backoff_s=0.01, breaker_failures=2,
                     breaker_reset_s=1.0, cache_ttl_s=60)


def ask(quotes: CarrierQuotes, parcels: list[Parcel]) -> tuple[list[CarrierPrice], float]:
    async def go():
        started = time.perf_counter()
        try:
            return await quotes.prices(parcels), time.perf_counter() - started
        finally:
            await quotes.aclose()
    return asyncio.run(go())


def fresh(services, policy=POLICY) -> CarrierQuotes:
    return CarrierQuotes(services.urls, policy)


def test_healthy_carriers_answer_with_their_true_prices(healthy):
    # Prices, not timing, under test: a budget no loaded machine misses.
    parcels = [parcel("northpost"), parcel("rapidparcel"), parcel("bluefreight")]
    prices, _ = ask(fresh(healthy, replace(POLICY, budget_s=5, timeout_s=2)), parcels)
    assert prices == [CarrierPrice(true_price(c), "quote") for c in ("northpost", "rapidparcel", "bluefreight")]


def test_a_slow_carrier_times_out_within_the_budget_and_the_others_still_quote(healthy):
    healthy.set_faults("northpost", Faults(latency_ms=2000))
    prices, seconds = ask(fresh(healthy), [parcel("northpost"), parcel("rapidparcel")])
    assert prices == [CarrierPrice(RATE_CARD, "rate_card", "timeout"), CarrierPrice(true_price("rapidparcel"), "quote")]
    assert seconds < POLICY.budget_s + SLACK_S


def test_a_hanging_carrier_is_cut_at_the_budget_not_at_its_timeout(healthy):
    # An attempt timeout longer than the budget: the budget ends the attempt.
    policy = replace(POLICY, budget_s=0.25, timeout_s=0.3, retries=0)
    healthy.set_faults("bluefreight", Faults(fault="hang"))
    prices, seconds = ask(fresh(healthy, policy), [parcel("bluefreight")])
    # "deadline": the estimate's own guard cut it, a few ms after the budget (a loaded machine's scheduling).
    assert prices in ([CarrierPrice(RATE_CARD, "rate_card", "timeout")],
                      [CarrierPrice(RATE_CARD, "rate_card", "deadline")])
    assert 0.24 <= seconds < policy.budget_s + SLACK_S


def test_a_5xx_is_retried_then_falls_back_and_a_malformed_quote_is_not_used(healthy):
    healthy.set_faults("northpost", Faults(fault="error"))
    healthy.set_faults("rapidparcel", Faults(fault="malformed"))
    prices, _ = ask(fresh(healthy), [parcel("northpost"), parcel("rapidparcel")])
    assert prices == [CarrierPrice(RATE_CARD, "rate_card", "http 503"),
                      CarrierPrice(RATE_CARD, "rate_card", "malformed quote: not JSON")]


def test_a_failing_carrier_falls_back_to_its_cached_quote_for_the_same_parcel(healthy):
    quotes = fresh(healthy)

    async def go():
        try:
            first = await quotes.prices([parcel("northpost")])
            healthy.set_faults("northpost", Faults(fault="error"))
            return first + await quotes.prices([parcel("northpost"), parcel("northpost", weight_kg=7.0)])
        finally:
            await quotes.aclose()

    assert asyncio.run(go()) == [CarrierPrice(true_price("northpost"), "quote"),
                                 CarrierPrice(true_price("northpost"), "cache", "http 503"),
                                 CarrierPrice(RATE_CARD, "rate_card", "http 503")]


def test_the_breaker_opens_after_failed_quotes_then_a_half_open_probe_closes_it(healthy):
    quotes = fresh(healthy)
    carrier = "rapidparcel"

    async def go():
        try:
            healthy.set_faults(carrier, Faults(fault="error"))
            failed = [await quotes.prices([parcel(carrier)]) for _ in range(2)]
            state_after_failures = quotes.breakers()[carrier]
            healthy.set_faults(carrier, Faults())  # the carrier is back, but the breaker does not know yet
            asked = healthy.apps[carrier].state.asked
            refused = await quotes.prices([parcel(carrier)])
            refused_asked = healthy.apps[carrier].state.asked - asked
            await asyncio.sleep(POLICY.breaker_reset_s)
            state_after_reset = quotes.breakers()[carrier]
            probe = await quotes.prices([parcel(carrier)])
            closed = quotes.breakers()[carrier]
            return failed, state_after_failures, refused, refused_asked, state_after_reset, probe, closed
        finally:
            await quotes.aclose()

    failed, opened, refused, refused_asked, half_open, probe, closed = asyncio.run(go())
    assert failed == [[CarrierPrice(RATE_CARD, "rate_card", "http 503")]] * 2
    assert (opened, refused, half_open, probe, closed) == (
        "open", [CarrierPrice(RATE_CARD, "rate_card", "circuit open")], "half_open",
        [CarrierPrice(true_price(carrier), "quote")], "closed")
    assert refused_asked == 0  # while open, the carrier is not asked at all


def test_a_failed_half_open_probe_opens_the_breaker_again(healthy):
    quotes = fresh(healthy)
    healthy.set_faults("bluefreight", Faults(fault="malformed"))

    async def go():
        try:
            for _ in range(2):
                await quotes.prices([parcel("bluefreight")])
            await asyncio.sleep(POLICY.breaker_reset_s)
            probe = await quotes.prices([parcel("bluefreight")])
            return probe, quotes.adapters["bluefreight"].breaker.transitions
        finally:
            await quotes.aclose()

    probe, transitions = asyncio.run(go())
    assert probe == [CarrierPrice(RATE_CARD, "rate_card", "malformed quote: not JSON")]
    assert transitions == [("closed", "open"), ("half_open", "open")]


def test_a_carrier_without_a_quote_service_is_priced_from_its_rate_card(healthy):
    prices, _ = ask(CarrierQuotes({}, POLICY), [parcel("northpost")])
    assert prices == [CarrierPrice(RATE_CARD, "rate_card", "no quote service")]


@pytest.mark.parametrize(("status", "body", "reason"), [
    (200, b'{"carrier": "northpost", "service_level": "standard", "currency": "USD", "price_usd": -1}',
     "malformed quote: no positive price_usd"),
    (200, b'{"carrier": "northpost", "service_level": "standard", "currency": "USD", "price_usd": "7"}',
     "malformed quote: no positive price_usd"),
    (200, b'{"carrier": "rapidparcel", "service_level": "standard", "currency": "USD", "price_usd": 7}',
     "malformed quote: another carrier, service level or currency"),
    (200, b"[1]", "malformed quote: no positive price_usd"),
    (422, b"{}", "refused: http 422"),
])
def test_answers_that_are_not_quotes_are_named(status, body, reason):
    with pytest.raises(QuoteFailed, match=f"^{reason}$"):
        parse_quote(parcel("northpost"), status, body)
