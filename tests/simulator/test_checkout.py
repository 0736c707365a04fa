"""Live shoppers at checkout: the truth's response to the charge and the gap, on a fake HTTP transport for the API."""

import json
import math
import uuid
from datetime import datetime

import httpx
import numpy as np
import pandas as pd
import pytest

from pricing.shipping_policy import SHIPPING_POLICY, shipping_charge
from readout.frames import readout_rows, true_lifts
from readout.shipping import SHIPPING_METRICS, true_shipping_values
from simulator.checkout import ShippingApi, check_out, checkout_probability, expected_invoice_factor, top_up_probability
from simulator.config import SimConfig
from simulator.shoppers import PriceApi, shop
from simulator.world import World


@pytest.fixture(scope="module")
def world() -> World:
    return World(SimConfig(seed=3, skus=100, days=5))


def fake_transport(requests: list, price: float = 5.0, threshold: float = 75.0, charge: float = 6.0):
    """Prices every SKU at `price`; quotes `charge` below `threshold` USD and nothing from it."""
    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path == "/v1/shipping/estimate":
            requests.append(body)
            best = {"carrier": "rapidparcel", "service_level": "standard", "estimate_usd": 5.1,
                    "charge_usd": 0.0 if body["subtotal_usd"] >= threshold else charge}
            return httpx.Response(200, json={
                "decision_id": f"q-{len(requests)}", "experiment": "free_shipping_50_vs_75", "variant": "free_from_75",
                "recommended": best, "options": [best], "free_shipping_threshold_usd": threshold})
        return httpx.Response(200, json={"decision_id": f"d-{body['sku']}", "price_usd": price,
                                         "experiment": "pricing_model_vs_rules", "variant": "model"})
    return httpx.MockTransport(answer)


def test_the_truth_falls_with_the_fee_and_grows_baskets_near_the_threshold(world):
    # purchase_given_cart 0.6, sensitivity 0.05 per USD; top-up 0.6 at no gap, none from 30 USD short
    assert checkout_probability(world, [0.0, 10.0]).tolist() == pytest.approx([0.6, 0.6 * math.exp(-0.5)])
    assert top_up_probability(world.params, [-5.0, 0.0, 7.5, 15.0, 30.0, 45.0]).tolist() == pytest.approx(
        [0.0, 0.0, 0.45, 0.3, 0.0, 0.0])
    # lognormal(0, 0.05) noise, 2% of invoices overcharged by 1.3..2.0 (1.65 on average)
    assert expected_invoice_factor(world.params) == pytest.approx(math.exp(0.05**2 / 2) * (1 + 0.02 * 0.65))


def test_a_basket_short_of_free_shipping_grows_to_it_as_often_as_the_truth_says(world):
    """One line at 60 USD: bought once (subtotal 60, 15 USD short of 75) the shopper grows it to 2 units
    with P 0.3, then pays nothing; else pays 6 USD."""
    requests: list = []
    api = ShippingApi(httpx.Client(base_url="http://api", transport=fake_transport(requests)))
    sku, price = np.array([7]), np.array([60.0])
    checkouts = [c for seed in range(3000) if (c := check_out(world, 5, api, np.random.default_rng(seed), 11, "C-11",
                                                             f"S-{seed}", sku, price)).truth["subtotal_usd"] == 60.0]
    assert len(checkouts) > 2000
    g6, g0 = 0.6 * math.exp(-0.05 * 6), 0.6
    for c in checkouts:
        assert c.truth["charge_usd"] == 6.0 and c.truth["p_top_up"] == pytest.approx(0.3)
        assert c.truth["topped_up_subtotal_usd"] == 120.0
        assert c.truth["p_checkout"] == pytest.approx(0.7 * g6 + 0.3 * g0)
        assert c.truth["expected_revenue_usd"] == pytest.approx(0.7 * g6 * 60 + 0.3 * g0 * 120)
        grew = len(c.quotes) == 2
        assert (c.quantity.tolist(), c.charge_usd) == (([2], 0.0) if grew else ([1], 6.0))
        assert c.carrier == "rapidparcel" and c.truth["decision_id"] == c.quotes[0].decision_id
    n = len(checkouts)
    grown = sum(len(c.quotes) == 2 for c in checkouts) / n
    assert abs(grown - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n)
    bought = sum(c.bought for c in checkouts) / n
    p = 0.7 * g6 + 0.3 * g0
    assert abs(bought - p) < 4 * math.sqrt(p * (1 - p) / n)
    # Each quote names the basket as it stands: the grown one at 2 units and 120 USD.
    grown_quotes = [r for r in requests if r["subtotal_usd"] == 120.0]
    assert grown_quotes and all(r["items"] == [{"sku": str(world.sku_id[7]), "quantity": 2}]
                                and r["service_level"] == "standard" for r in grown_quotes)


def test_with_shipping_a_session_buys_or_abandons_its_whole_cart_and_the_order_carries_the_charge(world):
    requests: list = []
    client = httpx.Client(base_url="http://api", transport=fake_transport(requests))
    sessions = [shop(world, 5, PriceApi(client), np.random.default_rng(seed), shipping=ShippingApi(client))
                for seed in range(150)]
    quoted = [s for s in sessions if s.checkout is not None]
    assert len(quoted) > 20 and any(s.transactions for s in quoted) and any(not s.transactions for s in quoted)
    for s in sessions:
        carted = {e["decision_id"] for e in s.clickstream if e["event_type"] == "add_to_cart"}
        bought = {e["decision_id"] for e in s.clickstream if e["event_type"] == "purchase"}
        assert bought in (set(), carted)  # the whole cart or nothing
        assert (s.checkout is not None) == bool(carted)
        if s.checkout is None:
            continue
        assert bool(bought) == s.checkout.bought
        assert [line["quantity"] for line in s.transactions] == (s.checkout.quantity.tolist() if bought else [])
        assert all((line["carrier"], line["service_level"], line["shipping_charged"]) ==
                   ("rapidparcel", "standard", s.checkout.charge_usd) for line in s.transactions)
        # every price decision's P(purchase): carted, then checked out at this session's expected charge
        for t in s.truth:
            assert t["p_purchase"] == pytest.approx(t["p_add_to_cart"] * s.checkout.truth["p_checkout"])


def policy_transport(threshold_by_variant: dict[str, float | None], estimate: float = 7.0):
    """Quotes by the repository's shipping policy (the variant's threshold) at a flat carrier estimate; the
    variant is named by the session id's prefix."""
    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        variant = body["customer"]["session_id"].split(":")[0]
        policy = SHIPPING_POLICY.with_free_shipping_from(threshold_by_variant[variant])
        best = {"carrier": "northpost", "service_level": "standard", "estimate_usd": estimate,
                "charge_usd": float(shipping_charge(policy, estimate, "standard", 1, body["subtotal_usd"]))}
        return httpx.Response(200, json={
            "decision_id": f"q-{uuid.uuid4()}", "experiment": "free_shipping_50_vs_75", "variant": variant,
            "recommended": best, "options": [best], "free_shipping_threshold_usd": policy.free_shipping_threshold_usd})
    return httpx.MockTransport(answer)


def test_a_simulated_shipping_experiments_true_lifts_lie_inside_the_readouts_intervals(world):
    """Free shipping from 50 against 75 USD, 1,500 carting visitors each, on baskets of one or two lines at
    the reference prices: every metric's true lift (from the checkout truth) is inside its 95% interval, and
    the lower threshold converts more, abandons less and earns less shipping margin (here below 0 in both: the
    flat 7 USD estimate is under most parcels' rate card, so a relative lift of +104% means twice the loss)."""
    api = ShippingApi(httpx.Client(base_url="http://api", transport=policy_transport(
        {"free_from_75": None, "free_from_50": 50.0})))
    rng = np.random.default_rng(26)
    visitors, sessions = [], []
    for n in range(3000):
        variant = ("free_from_75", "free_from_50")[n % 2]
        sku = rng.choice(world.n_skus, 1 + int(rng.random() < 0.3), replace=False)
        c = check_out(world, 5, api, rng, 11, f"C-{n}", f"{variant}:{n}", sku, world.ref_price[sku])
        paid = c.charge_usd if c.bought else 0.0
        visitors.append({"variant": variant, "visitor_id": f"C-{n}", "purchased": c.bought, "abandoned": not c.bought,
                         "revenue_usd": float(world.ref_price[sku] @ c.quantity) if c.bought else 0.0,
                         "shipping_margin_usd": paid - c.actual_cost_usd if c.bought else 0.0})
        sessions.append({**c.truth, "variant": variant, "visitor_id": f"C-{n}"})
    rows = readout_rows(pd.DataFrame(visitors), "free_shipping_50_vs_75", "free_from_75",
                        {"free_from_75": 50, "free_from_50": 50}, "r", datetime(2026, 12, 5), SHIPPING_METRICS)
    measured = rows[~rows["is_control"]].set_index("metric")
    truth = true_lifts(true_shipping_values(pd.DataFrame(sessions)), "free_from_75").set_index("metric")["true_lift"]
    for metric in SHIPPING_METRICS:
        assert measured.loc[metric, "ci_low"] <= truth[metric] <= measured.loc[metric, "ci_high"], metric
    values = true_shipping_values(pd.DataFrame(sessions)).set_index(["metric", "variant"])["true_value"]
    assert truth["conversion_rate"] > 0.02 and truth["cart_abandonment_rate"] < 0
    assert values["shipping_margin_per_visitor", "free_from_50"] < values["shipping_margin_per_visitor", "free_from_75"]
