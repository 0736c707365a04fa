"""One day of shopper behaviour: sessions, clickstream events, order lines and shipments (vectorised).

`simulate_day(world, day)` is the only place events are made: the history backfill writes its output
to the landing zone (after dirt) and a streaming producer can send it (or `events_between`) live.
All events of a day have UTC instants within that day. Grains: clickstream one row per event,
transactions one row per order line, shipments one row per order (truth only).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from lakehouse.reference import CARRIERS, CURRENCIES, SERVICE_LEVELS
from lakehouse.schemas.landing import CLICKSTREAM, TRANSACTIONS
from simulator.config import CARRIER_SHARE, rng_for
from simulator.formats import concat, iso_with_offset, money, postal_messy, uuids, zfill
from simulator.shipping import billable_weight_kg, rate_card_cost
from simulator.world import SEGMENT_SESSION_WEIGHT, World

DEVICES = np.array(["mobile", "desktop", "tablet", "app"])
DEVICE_P = [0.5, 0.3, 0.05, 0.15]
REFERRERS = np.array(["direct", "search", "social", "email", "ads"])
REFERRER_P = [0.3, 0.35, 0.1, 0.1, 0.15]
# Shoppers' UTC offsets in minutes; event times are written in the shopper's local time.
UTC_OFFSETS = np.array([0, -300, -240, -360, -420, -480, 60, 120])
UTC_OFFSET_P = [0.2, 0.25, 0.15, 0.12, 0.08, 0.1, 0.06, 0.04]
# Diurnal traffic: share of sessions starting in each UTC hour.
HOURLY = np.array([3, 2, 2, 1, 1, 1, 2, 3, 4, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 6, 5, 5, 4], dtype=float)
SESSION_ROOM_S = 3 * 3600  # sessions start early enough to end (abandon included) the same day
ABANDON_AFTER_S = 1800.0  # a cart is declared abandoned after 30 minutes of inactivity
CARRIER_NAMES, SERVICE_NAMES = np.asarray(CARRIERS), np.asarray(SERVICE_LEVELS)
COUPONS = np.array(["SAVE10", "WELCOME5", "FREESHIP", "VIP15"])

CLICKSTREAM_COLUMNS = CLICKSTREAM.fieldNames()
TRANSACTION_COLUMNS = TRANSACTIONS.fieldNames()


@dataclass(frozen=True)
class DayEvents:
    """A day's clean events in landing-schema columns, plus the per-order shipping truth."""

    clickstream: pd.DataFrame
    transactions: pd.DataFrame
    shipments: pd.DataFrame


def _group_starts(group: np.ndarray) -> np.ndarray:
    """Index of the first row of each row's group, for rows sorted by group."""
    first = np.r_[True, group[1:] != group[:-1]]
    return np.maximum.accumulate(np.where(first, np.arange(len(group)), 0))


def simulate_day(world: World, day: int, with_coupons: bool = False) -> DayEvents:
    """Simulate every session of `day`: views, carts, checkouts, orders and their shipments."""
    p, rng = world.params, rng_for(world.config.seed, "events", day)
    when = world.config.day_date(day)
    price, cmin = world.own_price(day), world.competitor_min_usd(day)

    # Views per SKU, then randomly grouped into sessions (sorted by session, then time).
    view_sku = np.repeat(np.arange(world.n_skus), rng.poisson(world.expected_views(day)))
    n_views = len(view_sku)
    n_sess = max(1, round(n_views / p.views_per_session))
    _, view_sess = np.unique(rng.integers(0, n_sess, n_views), return_inverse=True)
    order = np.argsort(view_sess, kind="stable")
    view_sku, view_sess = view_sku[order], view_sess[order]
    n_sess = int(view_sess.max()) + 1 if n_views else 0

    # Session attributes: a customer (logged in or not), device, referrer, local offset, start.
    active = np.flatnonzero(world.signup_day <= day)
    weight = SEGMENT_SESSION_WEIGHT[world.segment[active]]
    sess_customer = rng.choice(active, n_sess, p=weight / weight.sum())
    sess_logged_in = rng.random(n_sess) < p.logged_in_share
    sess_id = uuids(rng, n_sess)
    sess_device = rng.choice(DEVICES, n_sess, p=DEVICE_P)
    sess_referrer = rng.choice(REFERRERS, n_sess, p=REFERRER_P)
    sess_offset = rng.choice(UTC_OFFSETS, n_sess, p=UTC_OFFSET_P)
    hour = rng.choice(24, n_sess, p=HOURLY / HOURLY.sum())
    sess_start = np.minimum(hour * 3600 + rng.uniform(0, 3600, n_sess), 86400 - SESSION_ROOM_S)

    gaps = rng.exponential(40.0, n_views) + 1.0
    cum = np.cumsum(gaps)
    starts = _group_starts(view_sess)
    view_t = sess_start[view_sess] + cum - cum[starts] + gaps[starts]

    # Add to cart with the price-dependent probability; then removal, checkout and payment.
    cart = rng.random(n_views) < world.cart_probability(view_sku, price[view_sku], cmin[view_sku])
    c_idx = np.flatnonzero(cart)
    c_sku, c_sess = view_sku[c_idx], view_sess[c_idx]
    c_t = view_t[c_idx] + rng.uniform(5, 30, len(c_idx))
    removed = rng.random(len(c_idx)) < p.remove_rate
    r_t = c_t + rng.uniform(30, 120, len(c_idx))
    sess_end = np.zeros(n_sess)
    np.maximum.at(sess_end, view_sess, view_t)
    np.maximum.at(sess_end, c_sess, np.where(removed, r_t, c_t))
    sess_end += 20.0
    sess_checkout = rng.random(n_sess) < p.checkout_rate
    sess_pays = sess_checkout & (rng.random(n_sess) < p.pay_rate)
    kept = ~removed
    k_sku, k_sess = c_sku[kept], c_sess[kept]
    has_lines = np.bincount(k_sess, minlength=n_sess) > 0
    sess_order = sess_pays & has_lines
    bought = sess_order[k_sess]
    checkout = sess_checkout[k_sess]
    purchase_t = sess_end + rng.uniform(30, 90, n_sess)

    # Orders: one per paying session with kept lines, numbered within the day.
    order_sess = np.flatnonzero(sess_order)
    order_no = np.full(n_sess, -1)
    order_no[order_sess] = np.arange(len(order_sess))
    order_id = concat("ORD-", when.strftime("%Y%m%d"), "-", zfill(np.arange(len(order_sess)), 7))
    sess_order_id = np.full(n_sess, None, dtype=object)
    sess_order_id[order_sess] = order_id

    cust = world.customer_id[sess_customer]
    shown_cust = np.where(sess_logged_in, cust, None)
    parts = [  # (session, sku, event_type, seconds, customer visible?, order id?)
        (view_sess, view_sku, "view", view_t, shown_cust[view_sess], None),
        (c_sess, c_sku, "add_to_cart", c_t, shown_cust[c_sess], None),
        (c_sess[removed], c_sku[removed], "remove_from_cart", r_t[removed], shown_cust[c_sess[removed]], None),
        (k_sess[checkout], k_sku[checkout], "checkout", sess_end[k_sess[checkout]], cust[k_sess[checkout]],
         sess_order_id[k_sess[checkout]]),
        (k_sess[bought], k_sku[bought], "purchase", purchase_t[k_sess[bought]], cust[k_sess[bought]],
         sess_order_id[k_sess[bought]]),
        (k_sess[~bought], k_sku[~bought], "abandon", sess_end[k_sess[~bought]] + ABANDON_AFTER_S,
         np.where(checkout[~bought], cust[k_sess[~bought]], shown_cust[k_sess[~bought]]), None),
    ]
    e_sess = np.concatenate([x[0] for x in parts])
    e_sku = np.concatenate([x[1] for x in parts])
    e_t = np.minimum(np.concatenate([x[3] for x in parts]), 86399.999)
    e_type = np.repeat([x[2] for x in parts], [len(x[0]) for x in parts])
    e_cust = np.concatenate([x[4] for x in parts])
    e_order = np.concatenate([np.full(len(x[0]), None, dtype=object) if x[5] is None else x[5] for x in parts])
    page = np.where(e_type == "view", "product",
                    np.where(np.isin(e_type, ["checkout", "purchase"]), "checkout", "cart"))
    by_time = np.lexsort((np.arange(len(e_t)), e_t))
    clickstream = pd.DataFrame({
        "event_id": uuids(rng, len(e_t)),
        "session_id": sess_id[e_sess],
        "customer_id": e_cust,
        "sku": world.sku_id[e_sku],
        "event_type": e_type,
        "price_shown": price[e_sku],
        "event_time": iso_with_offset(when, e_t, sess_offset[e_sess]),
        "device": sess_device[e_sess],
        "referrer": sess_referrer[e_sess],
        "page": page,
        "order_id": e_order,
        "decision_id": np.full(len(e_t), None, dtype=object),  # no API decided these prices
    }, columns=CLICKSTREAM_COLUMNS).iloc[by_time].reset_index(drop=True)

    lines = _order_lines(world, rng, k_sess[bought], k_sku[bought], order_no)
    shipments = _shipments(world, day, rng, lines, price, order_id, sess_customer[order_sess])
    o = lines["order"]
    eur = shipments["currency"] == "EUR"
    fx_eur = world.fx_rate(day, CURRENCIES.index("EUR"))
    to_order_ccy = np.where(eur, 1 / fx_eur, 1.0)
    osess = order_sess[o]
    transactions = pd.DataFrame({
        "event_id": uuids(rng, len(o)),
        "order_id": order_id[o],
        "line_number": lines["line_number"],
        "customer_id": cust[osess],
        "sku": world.sku_id[lines["sku"]],
        "quantity": lines["quantity"],
        "unit_price_paid": money(price[lines["sku"]] * to_order_ccy[o]),
        "currency": shipments["currency"][o],
        "event_time": iso_with_offset(when, purchase_t[osess], sess_offset[osess]),
        "postal_code": postal_messy(world.zip5[sess_customer[osess]], world.plus4[sess_customer[osess]], rng),
        "carrier": CARRIER_NAMES[shipments["carrier"][o]],
        "service_level": SERVICE_NAMES[shipments["service"][o]],
        "shipping_charged": money(shipments["shipping_charged_usd"][o] * to_order_ccy[o]),
        "actual_shipping_cost": shipments["actual_cost"][o],
        "session_id": sess_id[osess],
    }, columns=TRANSACTION_COLUMNS)
    if with_coupons:
        has = rng.random(len(order_id)) < p.coupon_share
        transactions["coupon_code"] = np.where(has, COUPONS[rng.integers(0, len(COUPONS), len(order_id))], None)[o]
    transactions = transactions.iloc[np.argsort(purchase_t[osess], kind="stable")].reset_index(drop=True)
    ship = pd.DataFrame(shipments).assign(carrier=CARRIER_NAMES[shipments["carrier"]],
                                          service=SERVICE_NAMES[shipments["service"]])
    ship.insert(0, "order_id", order_id)
    ship.insert(1, "date", when)
    return DayEvents(clickstream, transactions, ship)


def _order_lines(world: World, rng: np.random.Generator, sess: np.ndarray, sku: np.ndarray,
                 order_no: np.ndarray) -> dict[str, np.ndarray]:
    """Order lines (sorted by order): order index, line number from 1, SKU index, quantity."""
    o = order_no[sess]
    by_order = np.argsort(o, kind="stable")
    o, sku = o[by_order], sku[by_order]
    return {"order": o, "line_number": np.arange(len(o)) - _group_starts(o) + 1, "sku": sku,
            "quantity": 1 + rng.poisson(world.params.extra_quantity_mean, len(o))}


def _shipments(world: World, day: int, rng: np.random.Generator, lines: dict[str, np.ndarray],
               price: np.ndarray, order_id: np.ndarray, customer: np.ndarray) -> dict[str, np.ndarray]:
    """Per order: parcel, carrier, service, zone, rate-card cost, invoice (noise, anomalies), charge."""
    p, n = world.params, len(order_id)
    o, sku, qty = lines["order"], lines["sku"], lines["quantity"]
    weight_kg = np.bincount(o, weights=qty * world.weight_g[sku] / 1000.0, minlength=n)
    volume = np.bincount(o, weights=qty * world.dims_cm[sku].prod(axis=1), minlength=n)
    subtotal = np.bincount(o, weights=qty * price[sku], minlength=n)
    carrier = rng.choice(len(CARRIERS), n, p=CARRIER_SHARE)
    service = (rng.random(n) < p.express_share).astype(np.int64)
    zone, remote = world.zone_of(world.zip_prefix[customer])
    billable = billable_weight_kg(weight_kg, volume, carrier)
    card = rate_card_cost(world.rate_cards, day, carrier, service, zone, billable, remote)
    noise = rng.lognormal(0.0, p.shipping_noise_sigma, n)
    anomaly = rng.random(n) < p.anomaly_rate
    factor = np.where(anomaly, rng.uniform(*p.anomaly_range, n), 1.0)
    free = (service == 0) & (subtotal >= p.free_shipping_threshold)
    return {
        "carrier": carrier, "service": service, "zone": zone, "is_remote": remote,
        "weight_kg": weight_kg, "volume_cm3": volume, "billable_kg": billable, "subtotal_usd": subtotal,
        "rate_card_cost": card, "noise": noise, "is_anomaly": anomaly, "anomaly_factor": factor,
        "actual_cost": money(card * noise * factor),
        "shipping_charged_usd": np.where(free, 0.0, money(card * (1 + p.shipping_markup))),
        "currency": np.where(rng.random(n) < p.eur_order_share, "EUR", "USD"),
    }


def events_between(world: World, start: datetime, end: datetime) -> DayEvents:
    """Clean events with UTC instants in [start, end) (timezone-aware datetimes), for a live producer.

    Whole days are simulated and cut to the window, so consecutive windows never repeat an event.
    """
    config = world.config
    first, last = config.day_of(start.date()), config.day_of((end - timedelta(microseconds=1)).date())
    days = [simulate_day(world, d, with_coupons=d >= config.dirt.coupon_code_from_day)
            for d in range(first, last + 1)]

    def window(df: pd.DataFrame, column: str) -> pd.DataFrame:
        t = pd.to_datetime(df[column], utc=True, format="ISO8601")
        return df[(t >= pd.Timestamp(start)) & (t < pd.Timestamp(end))].reset_index(drop=True)

    shipments = pd.concat([d.shipments for d in days], ignore_index=True)
    transactions = window(pd.concat([d.transactions for d in days], ignore_index=True), "event_time")
    return DayEvents(window(pd.concat([d.clickstream for d in days], ignore_index=True), "event_time"),
                     transactions, shipments[shipments["order_id"].isin(transactions["order_id"])])
