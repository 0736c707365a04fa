"""Live shoppers: simulated sessions that get their prices from the running API and behave by the truth.

Each session is a known customer of the simulator's world who views a few SKUs (drawn by the day's
expected views). Every viewed price comes from `POST /v1/prices` (real HTTP, the key from
`<state>/api_key.txt`); the shopper then adds the SKU to the cart with the world's true probability
at that price (`World.cart_probability`), buys it with `purchase_given_cart`, else abandons it.
Clickstream events (view, add_to_cart, checkout, purchase, abandon) carry the `decision_id` of the
price shown; purchases also send order lines. Both go to Kafka through `streaming.producer`'s
idempotent producer. Per decision the true expectations (P(add to cart), P(purchase), units, revenue
and margin at the true unit cost) are written to `<truth>/live_decisions/<run_id>.parquet`, so the
true lift of every variant is known (P(purchase) approximately: below). A session that carted something
then asks the API for its shipping charge and responds to it (`simulator.checkout`: it may grow the basket
to free shipping, then buys or abandons the whole cart); that truth goes to
`<truth>/live_shipping/<run_id>.parquet`. A price decision's P(purchase) is P(add to cart) times its
session's expected P(checkout) (for a session that carted nothing, the run's mean so far). Given market
shocks (`simulator.shocks`), shoppers feel them as they happen: a demand shock scales the arrival rate of
its category's views, a competitor shock the add-to-cart probability through the competitor price.

    python -m simulator.shoppers --minutes 3 --sessions-per-s 5
    python -m simulator.shoppers --minutes 3 --shocks .state/truth/shocks.parquet   # the live market's shocks
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from confluent_kafka import KafkaError

from lakehouse.kafka import ensure_topics, failed_to, kafka_producer, send
from lakehouse.log import configure_logging
from lakehouse.reference import CARRIERS
from lakehouse.settings import get_settings
from lakehouse.streams import SHOPPER_STREAMS
from serving.gateway import API_KEY_HEADER, initial_key_file
from simulator import truth as sim_truth
from simulator.checkout import SHIPPING_TRUTH_COLUMNS, Checkout, ShippingApi, check_out
from simulator.events import CARRIER_NAMES, DEVICE_P, DEVICES, REFERRER_P, REFERRERS, SERVICE_NAMES, _shipments
from simulator.shocks import MarketState, Shock, market_state, read_shocks
from simulator.world import SEGMENT_SESSION_WEIGHT, World
from streaming.producer import ProduceError

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 5.0
MEAN_VIEWS_PER_SESSION = 2.5  # as in the history: 1 + Poisson(1.5)
TRUTH_COLUMNS = ("decision_id", "experiment", "variant", "customer_id", "session_id", "sku", "price_usd",
                 "unit_cost_usd", "p_add_to_cart", "p_purchase", "expected_units", "expected_revenue_usd",
                 "expected_margin_usd")


class ShopperError(RuntimeError):
    """The API refused a price request: the message has its status and body."""


@dataclass(frozen=True)
class Decision:
    """The API's answer for one viewed SKU."""

    decision_id: str
    price_usd: float
    experiment: str | None
    variant: str | None


@dataclass(frozen=True)
class LineOutcomes:
    """What shoppers did with viewed SKUs (arrays aligned with the views) and the truth behind it."""

    p_add_to_cart: np.ndarray
    p_purchase: np.ndarray
    unit_cost_usd: np.ndarray
    added: np.ndarray
    purchased: np.ndarray
    quantity: np.ndarray

    def expected_units(self, extra_quantity_mean: float) -> np.ndarray:
        return self.p_purchase * (1 + extra_quantity_mean)


def behave(world: World, day: int, sku: np.ndarray, price: np.ndarray, rng: np.random.Generator,
           competitor_min_usd: np.ndarray | None = None) -> LineOutcomes:
    """The shopper's choice for each viewed SKU index at the price shown, drawn from the true model:
    add to cart with `cart_probability`, then buy with `purchase_given_cart` (else abandon).
    `competitor_min_usd` (every SKU's, e.g. shocked) replaces the day's competitor prices."""
    cmin = world.competitor_min_usd(day) if competitor_min_usd is None else competitor_min_usd
    p_cart = world.cart_probability(sku, price, cmin[sku])
    p_buy = p_cart * world.purchase_given_cart
    added = rng.random(len(sku)) < p_cart
    purchased = added & (rng.random(len(sku)) < world.purchase_given_cart)
    quantity = np.where(purchased, 1 + rng.poisson(world.params.extra_quantity_mean, len(sku)), 0)
    return LineOutcomes(p_cart, p_buy, world.unit_cost_usd(day)[sku], added, purchased, quantity)


class PriceApi:
    """`POST /v1/prices` over an httpx client (a real server, or a fake transport in tests)."""

    def __init__(self, client):
        self.client = client

    def price(self, sku: str, customer_id: str, session_id: str) -> Decision | None:
        """The API's decision, or None for a SKU it cannot price (404: no pricing features yet)."""
        response = self.client.post("/v1/prices", json={
            "sku": sku, "customer": {"customer_id": customer_id, "session_id": session_id}})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise ShopperError(f"POST /v1/prices for {sku} answered {response.status_code}: {response.text[:300]}")
        body = response.json()
        return Decision(body["decision_id"], float(body["price_usd"]), body.get("experiment"), body.get("variant"))


def api_client(settings, base_url: str | None = None):
    """An httpx client for the running API with the key `make up` created (`<state>/api_key.txt`)."""
    import httpx

    key_file = initial_key_file(settings)
    if not key_file.exists():
        raise ShopperError(f"no API key at {key_file}: start the stack first (make up)")
    return httpx.Client(base_url=base_url or f"http://{settings.api_host}:{settings.api_port}",
                        headers={API_KEY_HEADER: key_file.read_text().strip()}, timeout=10.0)


@dataclass
class Session:
    """One session's messages (source -> landing-schema rows) and per-decision truth rows."""

    clickstream: list[dict] = field(default_factory=list)
    transactions: list[dict] = field(default_factory=list)
    truth: list[dict] = field(default_factory=list)
    unpriced: int = 0  # views of SKUs the API could not price (404): the shopper moved on
    checkout: Checkout | None = None  # the shipping quotes and the response to them, when asked


def shop(world: World, day: int, api: PriceApi, rng: np.random.Generator, now=lambda: datetime.now(UTC),
         market: MarketState | None = None, shipping: ShippingApi | None = None,
         p_checkout_guess: float | None = None) -> Session:
    """One session: a known customer views SKUs priced by the API and behaves by the truth; under a
    shocked `market`, SKUs are viewed in proportion to their shocked traffic and bought against the
    shocked competitor prices.

    Grain of the output: clickstream one row per event, transactions one row per order line, truth
    one row per decision."""
    active = np.flatnonzero(world.signup_day <= world.state_day(day))
    weight = SEGMENT_SESSION_WEIGHT[world.segment[active]]
    customer = int(rng.choice(active, p=weight / weight.sum()))
    customer_id, session_id = str(world.customer_id[customer]), str(uuid.uuid4())
    views = world.expected_views(world.state_day(day))
    if market is not None:
        views = views * market.traffic
    # Distinct SKUs per session: a purchase's order line is found by (order_id, sku).
    n_views = min(1 + rng.poisson(MEAN_VIEWS_PER_SESSION - 1), int((views > 0).sum()))
    sku = rng.choice(world.n_skus, n_views, replace=False, p=views / views.sum())
    device, referrer = rng.choice(DEVICES, p=DEVICE_P), rng.choice(REFERRERS, p=REFERRER_P)
    answers = [api.price(str(world.sku_id[s]), customer_id, session_id) for s in sku]
    priced = np.array([a is not None for a in answers], dtype=bool)
    session = Session(unpriced=int((~priced).sum()))
    sku, decisions = sku[priced], [a for a in answers if a is not None]
    price = np.array([d.price_usd for d in decisions])
    outcome = behave(world, day, sku, price, rng, None if market is None else market.competitor_min_usd)
    checkout = None
    if shipping is not None and outcome.added.any():
        carted = np.flatnonzero(outcome.added)
        checkout = check_out(world, day, shipping, rng, customer, customer_id, session_id, sku[carted], price[carted])
    if checkout is not None:  # the whole cart is bought or abandoned, in the quantities after any top-up
        quantity = np.zeros(len(sku), dtype=np.int64)
        quantity[carted] = checkout.quantity
        outcome = dataclasses.replace(outcome, purchased=outcome.added & checkout.bought,
                                      quantity=np.where(checkout.bought, quantity, 0))
        session.checkout = checkout
    if shipping is not None:
        # P(purchase) of each price decision: carted, then checked out at this session's expected charge (or,
        # for a session that carted nothing, the run's mean so far: an approximation, docs/simulator.md).
        p_checkout = checkout.truth["p_checkout"] if checkout is not None else p_checkout_guess
        if p_checkout is not None:
            outcome = dataclasses.replace(outcome, p_purchase=outcome.p_add_to_cart * p_checkout)
    order_id = f"ORD-LIVE-{uuid.uuid4().hex[:12]}" if outcome.purchased.any() else None

    def event(i: int, event_type: str, page: str, order: str | None = None) -> None:
        session.clickstream.append({
            "event_id": str(uuid.uuid4()), "session_id": session_id, "customer_id": customer_id,
            "sku": str(world.sku_id[sku[i]]), "event_type": event_type, "price_shown": float(price[i]),
            "event_time": now().isoformat(timespec="milliseconds"), "device": str(device),
            "referrer": str(referrer), "page": page, "order_id": order, "decision_id": decisions[i].decision_id})

    for i in range(len(sku)):
        event(i, "view", "product")
        if outcome.added[i]:
            event(i, "add_to_cart", "cart")
    bought = np.flatnonzero(outcome.purchased)
    for kind in ("checkout", "purchase"):
        for i in bought:
            event(i, kind, "checkout", order_id)
    for i in np.flatnonzero(outcome.added & ~outcome.purchased):
        event(i, "abandon", "cart")
    if order_id is not None:
        session.transactions = _order_lines(world, day, rng, customer, customer_id, session_id, order_id,
                                            sku[bought], price[bought], outcome.quantity[bought], now(), checkout)
    units = outcome.expected_units(world.params.extra_quantity_mean)
    for i, d in enumerate(decisions):
        session.truth.append({
            "decision_id": d.decision_id, "experiment": d.experiment, "variant": d.variant,
            "customer_id": customer_id, "session_id": session_id, "sku": str(world.sku_id[sku[i]]),
            "price_usd": float(price[i]), "unit_cost_usd": float(outcome.unit_cost_usd[i]),
            "p_add_to_cart": float(outcome.p_add_to_cart[i]), "p_purchase": float(outcome.p_purchase[i]),
            "expected_units": float(units[i]), "expected_revenue_usd": float(units[i] * price[i]),
            "expected_margin_usd": float(units[i] * (price[i] - outcome.unit_cost_usd[i]))})
    return session


def _order_lines(world: World, day: int, rng: np.random.Generator, customer: int, customer_id: str,
                 session_id: str, order_id: str, sku: np.ndarray, price: np.ndarray, quantity: np.ndarray,
                 when: datetime, checkout: Checkout | None = None) -> list[dict]:
    """The order's lines (`sku`, `price` and `quantity` aligned) at the prices the API showed, in USD,
    shipped by the simulator's carrier model, or as `checkout` quoted it (carrier, charge; standard service).
    Grain: one row per order line."""
    catalogue_price = np.zeros(world.n_skus)
    catalogue_price[sku] = price
    lines = {"order": np.zeros(len(sku), dtype=np.int64), "sku": sku, "quantity": quantity}
    ship = _shipments(world, world.state_day(day), rng, lines, catalogue_price, np.array([order_id]),
                      np.array([customer]))
    if checkout is not None:
        ship = {**ship, "carrier": [CARRIERS.index(checkout.carrier)], "service": [0],
                "shipping_charged_usd": [checkout.charge_usd], "actual_cost": [checkout.actual_cost_usd]}
    return [{
        "event_id": str(uuid.uuid4()), "order_id": order_id, "line_number": n + 1, "customer_id": customer_id,
        "sku": str(world.sku_id[s]), "quantity": int(q), "unit_price_paid": float(p), "currency": "USD",
        "event_time": when.isoformat(timespec="milliseconds"), "postal_code": str(world.zip5[customer]),
        "carrier": str(CARRIER_NAMES[ship["carrier"][0]]), "service_level": str(SERVICE_NAMES[ship["service"][0]]),
        "shipping_charged": float(ship["shipping_charged_usd"][0]),
        "actual_shipping_cost": float(ship["actual_cost"][0]),
        "session_id": session_id,
    } for n, (s, p, q) in enumerate(zip(sku, price, quantity, strict=True))]


@dataclass(frozen=True)
class ShoppersRun:
    """What a run sent and where its per-decision truth is."""

    run_id: str
    sessions: int
    decisions: int
    events: int
    order_lines: int
    truth_path: Path
    event_ids: tuple[str, ...]  # every clickstream event and order line sent
    shipping_decision_ids: tuple[str, ...] = ()  # every shipping quote the shoppers asked for
    shipping_truth_path: Path | None = None  # one row per carting session that got a quote (simulator.checkout)


def live_truth_dir(settings) -> Path:
    return settings.truth_dir / "live_decisions"


def live_shipping_truth_dir(settings) -> Path:
    return settings.truth_dir / "live_shipping"


def run(settings, duration_s: float, sessions_per_s: float = 5.0, max_sessions: int | None = None,
        when: datetime | None = None, api: PriceApi | None = None, seed: int | None = None,
        shocks: Sequence[Shock] = ()) -> ShoppersRun:
    """Shoppers for `duration_s` seconds (or `max_sessions`) at `sessions_per_s`, on the world's state
    of `when`'s date (default: the day after the history). Under `shocks` (wall-clock instants), each
    session meets the market of its start: the session rate is scaled by the shocked share of traffic,
    so a demand shock multiplies its category's views by its multiplier and leaves the others'.
    Returns once Kafka acknowledged every message; raises `streaming.producer.ProduceError` otherwise."""
    if duration_s <= 0 or sessions_per_s <= 0:
        raise ValueError("duration and sessions per second must be positive: the shoppers always stop by themselves")
    # httpx logs every request at INFO: thousands of lines would bury the progress lines.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    world = sim_truth.load(settings.truth_dir).world
    day = world.n_days if when is None else world.config.day_of(when.date())
    api = api or PriceApi(api_client(settings))
    rng = np.random.default_rng(seed)
    ensure_topics(settings, list(SHOPPER_STREAMS.values()))
    topics = {name: s.topic(settings) for name, s in SHOPPER_STREAMS.items()}
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    truth_path = live_truth_dir(settings) / f"{run_id}.parquet"
    shipping_truth_path = live_shipping_truth_dir(settings) / f"{run_id}.parquet"
    shipping_ids: list[str] = []
    producer = kafka_producer(settings.kafka_bootstrap_servers)
    failures: list[KafkaError] = []
    on_delivery = failed_to(failures)
    truth: list[dict] = []
    shipping_truth: list[dict] = []
    shipping_api = ShippingApi(api.client)
    event_ids: list[str] = []
    counts = {"sessions": 0, "events": 0, "order_lines": 0, "unpriced_views": 0}
    base_views = world.expected_views(world.state_day(day))
    due = 0.0  # seconds after the start at which the next session is due
    started = last_log = time.monotonic()
    log.info("shoppers starting", extra={"run_id": run_id, "day": world.config.day_date(day).isoformat(),
                                         "duration_s": duration_s, "sessions_per_s": sessions_per_s})
    try:
        while time.monotonic() - started < duration_s and (max_sessions is None or counts["sessions"] < max_sessions):
            market, rate = None, 1.0
            if shocks:
                market = market_state(world, shocks, datetime.now(UTC), day)
                rate = float((base_views * market.traffic).sum() / base_views.sum())
            guess = float(np.mean([t["p_checkout"] for t in shipping_truth])) if shipping_truth else None
            session = shop(world, day, api, rng, market=market, shipping=shipping_api, p_checkout_guess=guess)
            if session.checkout is not None:
                shipping_truth.append(session.checkout.truth)
                shipping_ids += [q.decision_id for q in session.checkout.quotes]
            for source, rows, key in (("clickstream", session.clickstream, "session_id"),
                                      ("transactions", session.transactions, "order_id")):
                for row in rows:
                    event_ids.append(row["event_id"])
                    send(producer, topics[source], json.dumps(row).encode(), row[key].encode(),
                            on_delivery=on_delivery)
            truth += session.truth
            counts["sessions"] += 1
            counts["events"] += len(session.clickstream)
            counts["order_lines"] += len(session.transactions)
            counts["unpriced_views"] += session.unpriced
            now = time.monotonic()
            due += 1.0 / (sessions_per_s * rate)
            if (ahead := due - (now - started)) > 0:
                time.sleep(min(ahead, max(0.0, duration_s - (now - started))))
            if now - last_log >= PROGRESS_EVERY_S:
                last_log = now
                log.info("shopping", extra={**counts, "decisions": len(truth), "seconds": round(now - started)})
        producer.flush()
    finally:
        producer.close()
        if truth:
            truth_path.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(truth, columns=list(TRUTH_COLUMNS)).to_parquet(truth_path, index=False)
        if shipping_truth:
            shipping_truth_path.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(shipping_truth, columns=list(SHIPPING_TRUTH_COLUMNS)).to_parquet(shipping_truth_path,
                                                                                        index=False)
    if failures:
        raise ProduceError(f"{len(failures)} shopper messages not acknowledged: {failures[0]!r}")
    result = ShoppersRun(run_id, counts["sessions"], len(truth), counts["events"], counts["order_lines"], truth_path,
                         tuple(event_ids), tuple(shipping_ids), shipping_truth_path if shipping_truth else None)
    log.info("shoppers done", extra={**counts, "decisions": len(truth), "shipping_decisions": len(shipping_ids),
                                     "truth": str(truth_path),
                                     "seconds": round(time.monotonic() - started, 1)})
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulator.shoppers", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Simulated shoppers priced by the running API (POST /v1/prices); their clickstream and order "
                    "lines go to Kafka with the decision ids, the per-decision truth to <truth>/live_decisions/.")
    parser.add_argument("--minutes", type=float, default=3.0, help="how long to shop")
    parser.add_argument("--sessions-per-s", type=float, default=5.0, help="sessions started per second")
    parser.add_argument("--max-sessions", type=int, default=None, help="stop after this many sessions")
    parser.add_argument("--day", type=datetime.fromisoformat, default=None,
                        help="simulated date whose prices, costs and competitors apply (default: the day after "
                             "the history)")
    parser.add_argument("--api-url", default=None, help="the API's base URL (default: from the settings)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the shoppers' draws (default: random)")
    parser.add_argument("--shocks", type=Path, default=None,
                        help="a shocks.parquet (the live market writes <truth>/shocks.parquet) whose shocks the "
                             "shoppers feel")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    configure_logging()
    settings = get_settings()
    result = run(settings, args.minutes * 60, args.sessions_per_s, args.max_sessions,
                 args.day.replace(tzinfo=UTC) if args.day else None,
                 PriceApi(api_client(settings, args.api_url)), args.seed,
                 read_shocks(args.shocks) if args.shocks else ())
    print(json.dumps({"run_id": result.run_id, "sessions": result.sessions, "decisions": result.decisions,
                      "shipping_decisions": len(result.shipping_decision_ids), "events": result.events,
                      "order_lines": result.order_lines, "truth": str(result.truth_path),
                      "shipping_truth": str(result.shipping_truth_path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
