"""Live shoppers' decision logic on a small world, with a fake HTTP transport standing in for the API."""

import json

import httpx
import numpy as np
import pytest

from lakehouse.schemas.landing import CLICKSTREAM, TRANSACTIONS
from simulator.config import SimConfig
from simulator.shoppers import PriceApi, ShopperError, behave, shop
from simulator.world import World


@pytest.fixture(scope="module")
def world() -> World:
    return World(SimConfig(seed=3, skus=100, days=5))


def fake_api(price: float, requests: list) -> PriceApi:
    """An API that prices every SKU at `price` and numbers its decisions d-0, d-1, ..."""
    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(json.loads(request.content))
        return httpx.Response(200, json={"decision_id": f"d-{len(requests) - 1}", "price_usd": price,
                                         "experiment": "pricing_model_vs_rules",
                                         "variant": "model" if price < 50 else "rule_based"})
    return PriceApi(httpx.Client(base_url="http://api", transport=httpx.MockTransport(answer)))


def test_shoppers_add_to_cart_and_buy_with_the_true_probabilities(world):
    sku = np.full(40_000, 7)
    price = np.full(40_000, world.ref_price[7] * 0.9)
    outcome = behave(world, 5, sku, price, np.random.default_rng(1))
    p_cart = float(world.cart_probability(np.array([7]), price[:1], world.competitor_min_usd(5)[[7]])[0])
    assert np.all(outcome.p_add_to_cart == p_cart)
    assert np.allclose(outcome.p_purchase, p_cart * 0.6)
    assert np.all(outcome.unit_cost_usd == world.unit_cost_usd(5)[7])
    # frequencies within 4 standard errors of the true probabilities
    assert abs(outcome.added.mean() - p_cart) < 4 * np.sqrt(p_cart * (1 - p_cart) / 40_000)
    bought_given_cart = outcome.purchased[outcome.added].mean()
    assert abs(bought_given_cart - 0.6) < 4 * np.sqrt(0.24 / outcome.added.sum())
    assert not np.any(outcome.purchased & ~outcome.added)
    assert np.all(outcome.quantity[~outcome.purchased] == 0) and np.all(outcome.quantity[outcome.purchased] >= 1)


def test_a_session_prices_every_view_through_the_api_and_tags_events_with_its_decisions(world):
    requests: list = []
    sessions = [shop(world, 5, fake_api(19.99, requests), np.random.default_rng(seed)) for seed in range(30)]
    views = [e for s in sessions for e in s.clickstream if e["event_type"] == "view"]
    truth = [t for s in sessions for t in s.truth]
    assert len(requests) == len(views) == len(truth)
    # one request per view, for the viewer's customer and session, in order
    assert [(r["sku"], r["customer"]["customer_id"], r["customer"]["session_id"]) for r in requests] == \
        [(v["sku"], v["customer_id"], v["session_id"]) for v in views]
    assert [v["decision_id"] for v in views] == [f"d-{i}" for i in range(len(views))]
    assert all(e["price_shown"] == 19.99 for s in sessions for e in s.clickstream)
    assert all(list(e) == CLICKSTREAM.fieldNames() for s in sessions for e in s.clickstream)
    assert all(list(line) == TRANSACTIONS.fieldNames() for s in sessions for line in s.transactions)
    # the truth is the true model at the API's price, not at the world's own price
    index = np.searchsorted(world.sku_id, [t["sku"] for t in truth])
    expected = world.cart_probability(index, np.full(len(index), 19.99), world.competitor_min_usd(5)[index])
    assert np.allclose([t["p_add_to_cart"] for t in truth], expected)
    for t in truth:
        assert t["expected_units"] == pytest.approx(t["p_add_to_cart"] * 0.6 * 1.25)
        assert t["expected_margin_usd"] == pytest.approx(t["expected_units"] * (19.99 - t["unit_cost_usd"]))
        assert (t["variant"], t["price_usd"]) == ("model", 19.99)


def test_purchases_and_abandons_follow_the_carts_and_orders_match_their_lines(world):
    sessions = [shop(world, 5, fake_api(5.0, []), np.random.default_rng(seed)) for seed in range(60)]
    for s in sessions:
        by_type: dict[str, list] = {}
        for e in s.clickstream:
            by_type.setdefault(e["event_type"], []).append(e)
        carted = sorted(e["decision_id"] for e in by_type.get("add_to_cart", []))
        bought = sorted(e["decision_id"] for e in by_type.get("purchase", []))
        abandoned = sorted(e["decision_id"] for e in by_type.get("abandon", []))
        assert sorted(bought + abandoned) == carted
        assert sorted(e["decision_id"] for e in by_type.get("checkout", [])) == bought
        assert sorted((e["order_id"], e["sku"]) for e in by_type.get("purchase", [])) == \
            sorted((line["order_id"], line["sku"]) for line in s.transactions)
        assert all(line["unit_price_paid"] == 5.0 and line["currency"] == "USD" for line in s.transactions)
    assert sum(len(s.transactions) for s in sessions) > 0  # cheap prices: some sessions buy


def test_a_refused_price_request_stops_the_shopper_with_the_reason(world):
    refuse = PriceApi(httpx.Client(base_url="http://api", transport=httpx.MockTransport(
        lambda request: httpx.Response(403, json={"detail": "unknown or revoked API key"}))))
    with pytest.raises(ShopperError, match="403.*revoked"):
        shop(world, 5, refuse, np.random.default_rng(0))
