"""Live shoppers at checkout: they ask the API what shipping costs them and respond to the charge, with known truth.

A session that carted something asks `POST /v1/shipping/estimate` (standard service, its carted lines and
subtotal, its customer's postal code) and sees the charge of the recommended option. When the basket is
`gap` USD short of the answer's free-shipping threshold, the shopper grows it with probability
`top_up_probability(gap)`: enough more units of the cheapest carted line to reach the threshold, and asks
again (a second decision). Then the whole cart is bought with `checkout_probability(charge)` (the world's
purchase-given-cart times exp(-sensitivity x charge): abandonment rises with the fee), else abandoned.
The order ships with the first quote's recommended carrier; the invoice is the rate card times the world's
noise and anomalies.

Per carting session, the truth (`SHIPPING_TRUTH_COLUMNS`) holds the expectations over both branches (grown
or not): P(top up), P(checkout), expected revenue, shipping cost and shipping margin. The basket is formed
before the shipping variant shows, so these expectations given the basket are the variant's true effect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lakehouse.reference import CARRIERS
from simulator.config import ModelParams
from simulator.formats import money
from simulator.shipping import billable_weight_kg, rate_card_cost
from simulator.world import World

SHIPPING_TRUTH_COLUMNS = (
    "decision_id", "experiment", "variant", "customer_id", "session_id", "subtotal_usd", "charge_usd",
    "free_shipping_threshold_usd", "p_top_up", "topped_up_subtotal_usd", "p_checkout", "expected_revenue_usd",
    "expected_shipping_cost_usd", "expected_shipping_margin_usd")
STANDARD = 0  # index of the standard service level


class QuoteError(RuntimeError):
    """The API refused a shipping request for another reason than the basket: the message has its status."""


@dataclass(frozen=True)
class Quote:
    """The API's shipping answer for a basket: the recommended option and the policy's free shipping."""

    decision_id: str
    experiment: str | None
    variant: str | None
    carrier: str
    estimate_usd: float
    charge_usd: float
    free_shipping_threshold_usd: float | None


class ShippingApi:
    """`POST /v1/shipping/estimate` over an httpx client (a real server, or a fake transport in tests)."""

    def __init__(self, client):
        self.client = client

    def quote(self, items: list[tuple[str, int]], postal_code: str, subtotal_usd: float, customer_id: str,
              session_id: str) -> Quote | None:
        """The standard-service quote, or None for a basket the API cannot quote (422: e.g. a SKU without
        dimensions, a postal code outside the zone chart)."""
        response = self.client.post("/v1/shipping/estimate", json={
            "items": [{"sku": s, "quantity": q} for s, q in items], "postal_code": postal_code,
            "service_level": "standard", "subtotal_usd": round(subtotal_usd, 2),
            "customer": {"customer_id": customer_id, "session_id": session_id}})
        if response.status_code == 422:
            return None
        if response.status_code != 200:
            raise QuoteError(f"POST /v1/shipping/estimate answered {response.status_code}: {response.text[:300]}")
        body = response.json()
        best = body["recommended"]
        return Quote(body["decision_id"], body.get("experiment"), body.get("variant"), best["carrier"],
                     float(best["estimate_usd"]), float(best["charge_usd"]), body.get("free_shipping_threshold_usd"))


def checkout_probability(world: World, charge_usd) -> np.ndarray:
    """P(the carted basket is bought | shipping charge), the world's truth: falls with the fee."""
    return world.purchase_given_cart * np.exp(-world.params.shipping_fee_sensitivity * np.asarray(charge_usd, float))


def top_up_probability(params: ModelParams, gap_usd) -> np.ndarray:
    """P(a basket `gap_usd` short of free shipping grows to reach it): top_up_max at no gap, 0 from the reach on."""
    gap = np.asarray(gap_usd, dtype=float)
    return np.where(gap > 0, params.top_up_max * np.clip(1 - gap / params.top_up_reach_usd, 0.0, 1.0), 0.0)


def expected_invoice_factor(params: ModelParams) -> float:
    """E[invoice / rate card]: lognormal noise times the anomalies' overcharge."""
    anomaly = 1 + params.anomaly_rate * (sum(params.anomaly_range) / 2 - 1)
    return math.exp(params.shipping_noise_sigma ** 2 / 2) * anomaly


@dataclass(frozen=True)
class Checkout:
    """What one carting session did at checkout, and the truth behind it."""

    quotes: tuple[Quote, ...]  # the first, and the second when the basket grew
    quantity: np.ndarray  # per carted line, after any top-up
    bought: bool
    charge_usd: float  # of the last quote
    carrier: str
    actual_cost_usd: float  # the invoice, had it shipped
    truth: dict


def check_out(world: World, day: int, api: ShippingApi, rng: np.random.Generator, customer: int, customer_id: str,
              session_id: str, sku: np.ndarray, price: np.ndarray) -> Checkout | None:
    """The checkout of carted lines (`sku` indexes and the `price` shown, aligned); None when the API cannot
    quote the basket (the caller then checks out without a shipping decision)."""
    p = world.params
    quantity = 1 + rng.poisson(p.extra_quantity_mean, len(sku))
    postal = str(world.zip5[customer])

    def ask(q: np.ndarray) -> Quote | None:
        return api.quote([(str(world.sku_id[s]), int(n)) for s, n in zip(sku, q, strict=True)], postal,
                         float(price @ q), customer_id, session_id)

    first = ask(quantity)
    if first is None:
        return None
    subtotal = float(price @ quantity)
    threshold = first.free_shipping_threshold_usd
    gap = threshold - subtotal if threshold is not None and first.charge_usd > 0 else 0.0
    p_up = float(top_up_probability(p, gap))
    cheapest = int(np.argmin(price))
    grown = quantity.copy()
    if gap > 0:
        grown[cheapest] += math.ceil(round(gap / price[cheapest], 9))
    quotes, final_q = (first,), quantity
    if p_up > 0 and rng.random() < p_up:
        second = ask(grown)
        if second is not None:
            quotes, final_q = (first, second), grown
    charge = quotes[-1].charge_usd
    bought = bool(rng.random() < float(checkout_probability(world, charge)))
    carrier = CARRIERS.index(first.carrier)
    zone, remote = world.zone_of(world.zip_prefix[[customer]])

    def rate_card(q: np.ndarray) -> float:
        weight = float(q @ world.weight_g[sku]) / 1000.0
        volume = float(q @ world.dims_cm[sku].prod(axis=1))
        billable = billable_weight_kg(np.array([weight]), np.array([volume]), np.array([carrier]))
        return float(rate_card_cost(world.rate_cards, np.array([world.state_day(day)]), np.array([carrier]),
                                    np.array([STANDARD]), zone, billable, remote)[0])

    factor = np.where(rng.random() < p.anomaly_rate, rng.uniform(*p.anomaly_range), 1.0)
    actual = float(money(np.array([rate_card(final_q) * rng.lognormal(0.0, p.shipping_noise_sigma) * factor]))[0])
    # The truth, over both branches: as asked (the first charge) and grown (free: it reached the threshold).
    invoice = expected_invoice_factor(p)
    stay, up = 1 - p_up, p_up
    g_stay, g_up = float(checkout_probability(world, first.charge_usd)), float(checkout_probability(world, 0.0))
    cost_stay, cost_up = rate_card(quantity) * invoice, (rate_card(grown) * invoice if p_up > 0 else 0.0)
    revenue = stay * g_stay * subtotal + up * g_up * float(price @ grown)
    cost = stay * g_stay * cost_stay + up * g_up * cost_up
    truth = {
        "decision_id": first.decision_id, "experiment": first.experiment, "variant": first.variant,
        "customer_id": customer_id, "session_id": session_id, "subtotal_usd": subtotal,
        "charge_usd": first.charge_usd, "free_shipping_threshold_usd": threshold, "p_top_up": p_up,
        "topped_up_subtotal_usd": float(price @ grown) if p_up > 0 else None,
        "p_checkout": stay * g_stay + up * g_up, "expected_revenue_usd": revenue,
        "expected_shipping_cost_usd": cost,
        "expected_shipping_margin_usd": stay * g_stay * first.charge_usd - cost}
    return Checkout(quotes, final_q, bought, charge, first.carrier, actual, truth)
