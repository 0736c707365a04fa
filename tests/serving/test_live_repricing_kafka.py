"""Integration: competitor prices through the real broker -> bronze -> the streaming features -> the running
API's live arm. A cut moves the live price with its reason code, within the daily move bound; a price below
our cost stops at the margin floor; hostile messages go to the dead letters and move nothing."""

import json
import shutil
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from pyspark.sql import functions as F

from lakehouse.delta import read_delta
from lakehouse.kafka import kafka_producer, send
from lakehouse.settings import Settings
from lakehouse.streams import DEAD_LETTER, MARKET_STREAM
from lakehouse.tables import table
from pricing.guardrails import DEFAULT_GUARDRAILS
from pricing.policy import LIVE_POLICY
from serving.app import create_app
from serving.gateway import API_KEY_HEADER, initial_key_file
from streaming.bronze import StreamOptions, start
from streaming.features import feature_starters

pytestmark = pytest.mark.integration

LIVE_TABLES = ("bronze.market_prices_stream", "gold.live_activity", "gold.live_competitor_prices")


@pytest.fixture
def lake(simulated_lake):
    """The shared simulated lake on its own topics; its live tables and checkpoints are removed afterwards,
    so that the other tests of the lake see no live features."""
    own = simulated_lake[0].model_copy(update={"kafka_topic_prefix": f"live-{uuid.uuid4().hex[:8]}",
                                               "live_features_poll_s": 0.5})
    yield own
    for name in LIVE_TABLES:
        shutil.rmtree(table(name).location(own), ignore_errors=True)
    shutil.rmtree(own.checkpoints_dir, ignore_errors=True)


def _send(settings: Settings, messages: list[dict]) -> None:
    producer = kafka_producer(settings.kafka_bootstrap_servers)
    for message in messages:
        send(producer, MARKET_STREAM.topic(settings), json.dumps(message).encode(), message["sku"].encode())
    assert producer.flush(60) == 0


def _land(spark, settings: Settings) -> None:
    """The market topic into bronze, then the competitor prices into the online table, until caught up."""
    for query in start(spark, settings, [MARKET_STREAM], StreamOptions("1 second", None, trigger="available-now")):
        assert query.awaitTermination(120) and query.exception() is None
    for starter in feature_starters(spark, settings, {"availableNow": True}):
        query = starter(True)
        assert query.awaitTermination(120) and query.exception() is None


def _live_answer(client: TestClient, sku: str) -> tuple[str, dict]:
    """A customer of the live arm and its answer for `sku`."""
    for i in range(1, 200):
        answer = client.post("/v1/prices", json={"sku": sku, "customer": {"customer_id": f"C-{i:07d}"}}).json()
        if answer["variant"] == "live":
            return f"C-{i:07d}", answer
    raise AssertionError("no customer of the live arm among the first 200")


def _wait_for_move(client: TestClient, sku: str, customer: str, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = client.post("/v1/prices", json={"sku": sku, "customer": {"customer_id": customer}}).json()
        if answer["reason_code"] is not None:
            return answer
        time.sleep(0.5)
    raise AssertionError(f"{sku}'s live price did not move within {timeout_s} s: {answer}")


def test_a_competitor_cut_moves_the_live_price_and_a_price_below_cost_stops_at_the_floor(spark, lake):
    features = (read_delta(spark, table("gold.pricing_features").location(lake))
                .where(F.col("competitor_min_price_usd").isNotNull() & F.col("unit_cost_usd").isNotNull()))
    latest = features.where(F.col("as_of_date") == features.agg(F.max("as_of_date")).first()[0])
    cut_sku, below_sku = (r for r in latest.orderBy("sku").limit(2).collect())
    now = datetime.now(UTC).replace(microsecond=0)

    def observation(sku: str, price: float, **overrides) -> dict:
        return {"sku": sku, "competitor": "megamart", "price": round(price, 2), "currency": "USD",
                "observed_at": now.isoformat(), **overrides}

    hostile = [observation("SKU-999999", 5.0), observation(cut_sku.sku, -3.0),
               observation(cut_sku.sku, 1.0, currency="XYZ"),
               observation(cut_sku.sku, 1.0, observed_at=(now + timedelta(days=2)).isoformat())]
    with TestClient(create_app(lake)) as client:
        client.headers[API_KEY_HEADER] = initial_key_file(lake).read_text().strip()
        deadline = time.monotonic() + 120  # models load in the background
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(1)
        customer, before = _live_answer(client, cut_sku.sku)
        assert before["reason_code"] is None  # no live features yet: the daily book's price

        _send(lake, [observation(cut_sku.sku, 0.8 * cut_sku.competitor_min_price_usd),
                     observation(below_sku.sku, 0.5 * below_sku.unit_cost_usd), *hostile])
        _land(spark, lake)
        cut = _wait_for_move(client, cut_sku.sku, customer)
        below = _wait_for_move(client, below_sku.sku, customer)

    assert cut["reason_code"] == below["reason_code"] == "COMPETITOR_MOVE"
    assert cut["live_features_as_of"] is not None
    bound = LIVE_POLICY.max_daily_move_pct / 100
    assert cut["price_usd"] < before["price_usd"] and cut["price_usd"] >= before["price_usd"] * (1 - bound) - 0.01
    assert below["price_usd"] >= below_sku.unit_cost_usd * DEFAULT_GUARDRAILS.margin_factor - 0.01
    # The hostile messages are dead letters naming their check, and moved no price.
    dead = read_delta(spark, DEAD_LETTER.location(lake)).where(F.col("_kafka_topic") == MARKET_STREAM.topic(lake))
    assert sorted(r.reason for r in dead.collect()) == [
        "rejected: currency_known", "rejected: observed_at_in_future", "rejected: price_positive",
        "rejected: sku_unknown"]
    prices = read_delta(spark, table("gold.live_competitor_prices").location(lake))
    assert sorted((r.sku, round(r.price_usd, 2)) for r in prices.collect()) == sorted([
        (cut_sku.sku, round(0.8 * cut_sku.competitor_min_price_usd, 2)),
        (below_sku.sku, round(0.5 * below_sku.unit_cost_usd, 2))])
