"""Live shoppers' decision logic on a small world, with a fake HTTP transport standing in for the API."""

import json
from datetime import UTC, datetime

import httpx
import numpy as np
import pytest

from lakehouse.reference import CATEGORIES
from lakehouse.schemas.landing import CLICKSTREAM, TRANSACTIONS
from lakehouse.streams import SHOPPER_STREAMS
from serving.app import create_app
from serving.experiments import parse_config
from serving.gateway import API_KEY_HEADER, initial_key_file
from simulator import shoppers
from simulator.config import SimConfig
from simulator.shocks import market_state, scripted_shocks, top_skus
from simulator.shoppers import PriceApi, ShopperError, behave, run, shop
from simulator.truth import MODEL_FILE, model_description
from simulator.world import World
from tests.support import consume


@pytest.fixture(scope="module")
def world() -> World:
    return World(SimConfig(seed=3, skus=100, days=5))


def fake_api(price: float, requests: list) -> PriceApi:
    """An API that prices every SKU at `price` and numbers its decisions d-0, d-1, ...; shipping quotes
    (not counted in `requests`) cost 6 USD below 75 USD, nothing from it."""
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/shipping/estimate":
            return httpx.Response(200, json=fake_quote(json.loads(request.content)))
        requests.append(json.loads(request.content))
        return httpx.Response(200, json={"decision_id": f"d-{len(requests) - 1}", "price_usd": price,
                                         "experiment": "pricing_model_vs_rules",
                                         "variant": "model" if price < 50 else "rule_based"})
    return PriceApi(httpx.Client(base_url="http://api", transport=httpx.MockTransport(answer)))


def fake_quote(body: dict, threshold: float = 75.0, charge: float = 6.0) -> dict:
    free = body["subtotal_usd"] >= threshold
    best = {"carrier": "northpost", "service_level": "standard", "estimate_usd": 5.0,
            "charge_usd": 0.0 if free else charge}
    return {"decision_id": f"q-{body['customer']['session_id']}-{body['subtotal_usd']}",
            "experiment": "free_shipping_50_vs_75", "variant": "free_from_75", "recommended": best,
            "options": [best], "free_shipping_threshold_usd": threshold}


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


def test_a_sku_the_api_cannot_price_is_counted_and_skipped(world):
    requests: list = []

    def every_other(request: httpx.Request) -> httpx.Response:
        requests.append(json.loads(request.content)["sku"])
        if len(requests) % 2:
            return httpx.Response(404, json={"detail": "no price"})
        return httpx.Response(200, json={"decision_id": f"d-{len(requests)}", "price_usd": 9.0,
                                         "experiment": None, "variant": None})

    api = PriceApi(httpx.Client(base_url="http://api", transport=httpx.MockTransport(every_other)))
    sessions = [shop(world, 5, api, np.random.default_rng(seed)) for seed in range(20)]
    refused = requests[0::2]
    assert sum(s.unpriced for s in sessions) == len(refused)
    views = [e for s in sessions for e in s.clickstream if e["event_type"] == "view"]
    assert [v["sku"] for v in views] == requests[1::2]
    assert [v["decision_id"] for v in views] == [f"d-{i}" for i in range(2, len(requests) + 1, 2)]


def test_a_refused_price_request_stops_the_shopper_with_the_reason(world):
    refuse = PriceApi(httpx.Client(base_url="http://api", transport=httpx.MockTransport(
        lambda request: httpx.Response(403, json={"detail": "unknown or revoked API key"}))))
    with pytest.raises(ShopperError, match="403.*revoked"):
        shop(world, 5, refuse, np.random.default_rng(0))


SHOCK_START = datetime(2026, 3, 2, 9, tzinfo=UTC)


def test_under_a_competitor_cut_shoppers_buy_against_the_cut_price(world):
    skus = top_skus(world, "electronics", 10, "megamart", day=5)
    cut = scripted_shocks(world, SHOCK_START, [{"kind": "competitor_cut", "at_s": 0, "competitor": "megamart",
                                                "skus": skus, "multiplier": 0.7}], day=5)
    market = market_state(world, cut, SHOCK_START, day=5)

    def at_reference_price(request: httpx.Request) -> httpx.Response:
        sku = json.loads(request.content)["sku"]
        return httpx.Response(200, json={"decision_id": sku, "experiment": None, "variant": None,
                                         "price_usd": float(world.ref_price[world.sku_index([sku])[0]])})

    api = PriceApi(httpx.Client(base_url="http://api", transport=httpx.MockTransport(at_reference_price)))
    truth = [t for seed in range(200) for t in shop(world, 5, api, np.random.default_rng(seed), market=market).truth]
    index = world.sku_index([t["sku"] for t in truth])
    price = world.ref_price[index]
    expected = world.cart_probability(index, price, market.competitor_min_usd[index])
    np.testing.assert_allclose([t["p_add_to_cart"] for t in truth], expected, rtol=1e-12)
    cheaper = market.competitor_min_usd[index] < world.competitor_min_usd(5)[index]
    assert cheaper.sum() >= 10  # viewed SKUs the cut made cheaper elsewhere: less likely to be carted
    unshocked = world.cart_probability(index, price, world.competitor_min_usd(5)[index])
    assert np.all(expected[cheaper] < unshocked[cheaper]) and np.all(expected[~cheaper] == unshocked[~cheaper])


def test_a_demand_surge_multiplies_the_views_of_its_category(world):
    """Views are drawn in proportion to traffic: toys' share s of the views becomes 3s / (1 + 2s) under a
    x3 surge (within 4 standard errors)."""
    toys = CATEGORIES.index("toys")
    surge = scripted_shocks(world, SHOCK_START, [{"kind": "demand_surge", "at_s": 0, "category": "toys",
                                                  "multiplier": 3.0}])
    views = world.expected_views(world.state_day(5))
    share = views[world.category == toys].sum() / views.sum()
    surged = market_state(world, surge, SHOCK_START, day=5)
    for market, expected in ((None, share), (surged, 3 * share / (1 + 2 * share))):
        seen = [e["sku"] for seed in range(600) for e in shop(world, 5, fake_api(9.0, []), np.random.default_rng(seed),
                                                              market=market).clickstream if e["event_type"] == "view"]
        observed = np.mean(world.category[world.sku_index(seen)] == toys)
        assert abs(observed - expected) < 4 * np.sqrt(expected * (1 - expected) / len(seen))


class NullProducer:
    """Accepts and forgets every message (confluent-kafka's produce / poll / flush / close)."""

    def produce(self, *args, **kwargs):
        pass

    def poll(self, timeout):
        return 0

    def flush(self, timeout=None):
        return 0

    def close(self):
        pass


def test_under_a_demand_surge_sessions_arrive_faster_by_the_surged_share_of_traffic(world, settings, tmp_path,
                                                                                  monkeypatch):
    """A x10 surge on toys (share s of traffic) makes sessions arrive 1 + 9s times as fast."""
    lake = settings.model_copy(update={"state_dir": tmp_path})
    lake.truth_dir.mkdir(parents=True)
    (lake.truth_dir / MODEL_FILE).write_text(json.dumps(model_description(world)))
    monkeypatch.setattr(shoppers, "ensure_topics", lambda *args: None)
    monkeypatch.setattr(shoppers, "kafka_producer", lambda *args: NullProducer())
    now = datetime.now(UTC)
    surge = scripted_shocks(world, now, [{"kind": "demand_surge", "at_s": -60, "category": "toys", "multiplier": 10.0}])
    views = world.expected_views(world.state_day(5))
    rate = 1 + 9 * views[world.category == CATEGORIES.index("toys")].sum() / views.sum()
    calm = run(lake, 2.0, sessions_per_s=15, api=fake_api(9.0, []), seed=1)
    surged = run(lake, 2.0, sessions_per_s=15, api=fake_api(9.0, []), seed=1, shocks=surge)
    assert abs(calm.sessions - 30) <= 2
    assert abs(surged.sessions - 30 * rate) <= 2


@pytest.mark.integration
def test_live_shoppers_on_the_real_api_reach_kafka_with_their_decision_ids(simulated_lake):
    """The real app on a simulated lake answers the shoppers; their events reach the real broker's topics
    tagged with the API's decision ids, and the truth file names the same decisions."""
    import time
    import uuid

    import pandas as pd
    from fastapi.testclient import TestClient

    lake = simulated_lake[0].model_copy(update={"kafka_topic_prefix": f"test-{uuid.uuid4().hex[:8]}"})
    with TestClient(create_app(lake)) as client:  # an httpx client on the app's ASGI interface
        client.headers[API_KEY_HEADER] = initial_key_file(lake).read_text().strip()
        deadline = time.monotonic() + 120  # models load in the background
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(1)
        result = run(lake, duration_s=60, sessions_per_s=20, max_sessions=15, api=PriceApi(client), seed=5)

    truth = pd.read_parquet(result.truth_path)
    assert result.sessions == 15 and len(truth) == result.decisions
    experiment = next(e for e in parse_config(lake.api_experiments_file.read_text()).experiments
                      if e.name == "pricing_model_vs_rules")
    assert set(truth["variant"]) <= {v.name for v in experiment.variants}
    assert truth["experiment"].eq("pricing_model_vs_rules").all()
    received = [(m.topic(), json.loads(m.value())) for m in consume(
        lake.kafka_bootstrap_servers, [s.topic(lake) for s in SHOPPER_STREAMS.values()],
        result.events + result.order_lines)]
    events = [value for topic, value in received if topic == SHOPPER_STREAMS["clickstream"].topic(lake)]
    lines = [value for topic, value in received if topic == SHOPPER_STREAMS["transactions"].topic(lake)]
    assert sorted(e["event_id"] for e in events + lines) == sorted(result.event_ids)
    views = [e for e in events if e["event_type"] == "view"]
    assert sorted(v["decision_id"] for v in views) == sorted(truth["decision_id"])
    shown = set(zip(truth["decision_id"], truth["price_usd"], strict=True))
    assert {(v["decision_id"], v["price_shown"]) for v in views} == shown
    assert len(lines) == result.order_lines
    # Carting sessions asked the real API for their shipping charge: the truth names those quotes, and every
    # order line carries the charge its session was quoted last.
    carting = {e["session_id"] for e in events if e["event_type"] == "add_to_cart"}
    quotes = pd.read_parquet(result.shipping_truth_path)
    # (a basket the API cannot quote, 422 for a SKU without measures, checks out unquoted)
    assert set(quotes["session_id"]) <= carting and len(result.shipping_decision_ids) >= len(quotes) > 0
    assert set(quotes["decision_id"]) <= set(result.shipping_decision_ids)
    assert quotes["experiment"].eq("free_shipping_50_vs_75").all()
    assert set(quotes["variant"]) <= {"free_from_75", "free_from_50"}
    assert ((quotes["charge_usd"] == 0) == (quotes["subtotal_usd"] >= quotes["free_shipping_threshold_usd"])).all()
    assert all(line["shipping_charged"] >= 0 and line["service_level"] == "standard" for line in lines)
