"""The simulated carriers' quote services: true rate-card prices, and the faults they can be set to."""

from datetime import date

import httpx
import pytest

from simulator.carriers import (
    MALFORMED_BODY,
    CarrierServices,
    Faults,
    QuoteRequest,
    carrier_app,
    quote,
    true_rate_cards,
)
from simulator.config import SimConfig

CONFIG = SimConfig()  # its rate increase is on day 45: 2026-09-15
PARCEL = {"postal_code": "02139", "service_level": "express", "weight_kg": 1.2, "volume_cm3": 9000.0}


def test_a_quote_is_the_true_rate_card_price_in_force_that_day():
    cards = true_rate_cards(CONFIG)
    # northpost (divisor 5000): 9000 cm3 -> 1.8 kg billable, the 2 kg break; 021 is zone 1, not remote.
    for today, card in ((date(2026, 9, 14), cards[0]), (date(2026, 9, 15), cards[1])):
        expected = round(card.base[0, 1, 0, 2] * (1 + card.fuel_pct[0] / 100), 2)
        assert quote(CONFIG, cards, "northpost", QuoteRequest(**PARCEL), today).model_dump() == {
            "carrier": "northpost", "service_level": "express", "zone": 1, "is_remote": False,
            "billable_weight_kg": 1.8, "price_usd": expected, "currency": "USD",
            "effective_from": CONFIG.day_date(card.effective_day)}
    with pytest.raises(ValueError, match="postal code '00001' is not served"):
        quote(CONFIG, cards, "northpost", QuoteRequest(**{**PARCEL, "postal_code": "00001"}), date(2026, 9, 1))


def test_the_service_answers_quotes_and_plays_each_fault():
    with CarrierServices(CONFIG, today=date(2026, 9, 1)) as services, httpx.Client() as client:
        url = services.urls["rapidparcel"]
        ok = client.post(f"{url}/quote", json=PARCEL)
        assert ok.status_code == 200 and ok.json()["carrier"] == "rapidparcel"
        bad = client.post(f"{url}/quote", json={**PARCEL, "service_level": "overnight"})
        assert (bad.status_code, bad.json()) == (422, {"detail": "unknown service level 'overnight'; known: "
                                                                 "standard, express"})
        assert client.put(f"{url}/faults", json={"fault": "error"}).json() == {"latency_ms": 0.0, "fault": "error"}
        assert client.post(f"{url}/quote", json=PARCEL).status_code == 503
        services.set_faults("rapidparcel", Faults(fault="malformed"))
        assert client.post(f"{url}/quote", json=PARCEL).text == MALFORMED_BODY
        services.set_faults("rapidparcel", Faults(latency_ms=300))
        with pytest.raises(httpx.ReadTimeout):
            client.post(f"{url}/quote", json=PARCEL, timeout=0.1)
        # The other carriers are untouched.
        assert client.get(f"{services.urls['northpost']}/faults").json() == {"latency_ms": 0.0, "fault": "none"}


def test_an_unknown_carrier_is_refused():
    with pytest.raises(ValueError, match="unknown carrier 'dhl'"):
        carrier_app("dhl", CONFIG)
