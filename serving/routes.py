"""The `/v1` endpoints: prices (one SKU, a basket), shipping estimates and price-response curves.

Every answer names its `decision_id`, the experiment variant, the strategy and the model version (or
the rule-based strategy's version) that produced it and the guardrails applied, and is written to
the decision log. When the model a variant asks for, or a SKU's features, are unavailable the answer
is the rule-based price (never below the margin floor) or the carrier's rate card, with
`fallback: true` and the reason. The `live` variant answers from the live price book (the model's daily
book repriced with live features), naming the live features' as-of time and the move's reason code;
while no live table exists it answers like `model`, with `fallback: true` and the reason. The `bandit`
variant draws each price by Thompson sampling (`serving.bandit`); where it has no open grid price it answers
like `model`, with `fallback: true`. Every price decision logs its propensity: the probability the strategy
had of choosing that price (1 but for the bandit). A shipping answer gives each option's expected carrier
cost and the shopper's charge, decided by the shipping policy (`pricing/shipping_policy.yaml`, the variant's
free-shipping threshold applied: `serving.shipping_charge`), and names the policy's version.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from pricing.live import LIVE, LiveReason
from pricing.optimizer import implied_elasticity, response_curve
from pricing.rules import DEFAULT_MARKUP, DEFAULT_UNDERCUT, RULE_BASED
from serving.bandit import BANDIT
from serving.carrier_quotes import CarrierPrice, Parcel, Source
from serving.components import Components, serving_of
from serving.decision_log import decision_record, new_decision_id
from serving.experiments import Assignment, Subject
from serving.gateway import GatewayRoute
from serving.models import LoadedModel
from serving.online_features import FeatureSnapshot
from serving.pricebook import feature_frame
from serving.shipping_charge import option_charges, variant_policy
from training.demand import reference_price
from training.registry import CHAMPION, PRICING_MODEL, SHIPPING_MODEL

RULE_VERSION = f"cost_plus_{DEFAULT_MARKUP:g}_match_minus_{DEFAULT_UNDERCUT:g}"
SKU_PATTERN = r"^SKU-\d{6}$"
POSTAL_PATTERN = r"^\s*\d{3,5}(-\d{4})?\s*$"

Sku = Annotated[str, Field(pattern=SKU_PATTERN, examples=["SKU-001362"], description="canonical SKU id")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Customer(_Strict):
    """Who asks: ids for sticky experiment assignment, attributes for targeting."""

    customer_id: str | None = Field(None, max_length=64, examples=["C-0009203"])
    session_id: str | None = Field(None, max_length=64)
    segment: Literal["new", "returning", "loyal"] | None = None
    postal_code: str | None = Field(None, pattern=POSTAL_PATTERN, examples=["02139"])
    country: str | None = Field(None, min_length=2, max_length=2, examples=["US"])
    region: str | None = Field(None, max_length=64)


class PriceRequest(_Strict):
    sku: Sku
    customer: Customer = Customer()


class BasketItem(_Strict):
    sku: Sku
    quantity: int = Field(1, ge=1, le=100)


class BasketPriceRequest(_Strict):
    items: list[BasketItem] = Field(min_length=1, max_length=50)
    customer: Customer = Customer()


class ShippingRequest(_Strict):
    items: list[BasketItem] = Field(min_length=1, max_length=50)
    postal_code: str = Field(pattern=POSTAL_PATTERN, examples=["02139"])
    service_level: Literal["standard", "express"] | None = Field(None, description="both when omitted")
    subtotal_usd: float | None = Field(
        None, ge=0, le=1_000_000, examples=[62.5],
        description="the basket's merchandise total the shopper pays; omitted: the basket never ships free")
    customer: Customer = Customer()


class ModelRef(BaseModel):
    name: str
    alias: str
    version: str


class Provenance(BaseModel):
    """Who decided: the experiment variant, strategy, model or rule version; whether a fallback answered."""

    decision_id: str
    experiment: str | None
    variant: str | None
    strategy: str
    model: ModelRef | None
    rule_version: str | None
    fallback: bool
    fallback_reason: str | None


class PriceAnswer(Provenance):
    sku: str
    price_usd: float
    currency: Literal["USD"] = "USD"
    guardrails: list[str] = Field(description="reason codes of the guardrails that moved or bound the price")
    features_as_of: date | None
    live_features_as_of: datetime | None = Field(
        None, description="live variant: the as-of time of the live features the price was decided on")
    reason_code: LiveReason | None = Field(
        None, description="live variant: why the price moved from the daily book's; null: no live move")


class BasketLine(PriceAnswer):
    quantity: int
    line_total_usd: float


class BasketPriceAnswer(BaseModel):
    lines: list[BasketLine]
    total_usd: float
    currency: Literal["USD"] = "USD"


class ShippingOption(BaseModel):
    carrier: str
    service_level: str
    estimate_usd: float = Field(description="the expected carrier cost")
    rate_card_usd: float
    billable_weight_kg: float
    charge_usd: float = Field(description="what the shopper pays for this option (the shipping policy's)")
    quote_usd: float = Field(description="the carrier's price of this parcel, from `source`")
    source: Source = Field(description="quote: the carrier's quote service answered; cache: its last quote for "
                                       "this parcel; rate_card: its rate card in force (serving.carrier_quotes)")
    source_reason: str | None = Field(description="why not a fresh quote (timeout, circuit open, ...); null: quoted")


class ShippingAnswer(Provenance):
    postal_code: str
    delivery_zone: int
    is_remote: bool
    actual_weight_kg: float
    volume_cm3: float
    recommended: ShippingOption
    options: list[ShippingOption]
    subtotal_usd: float | None
    shipping_policy_version: str = Field(description="the shipping policy (and variant threshold) behind the charges")
    free_shipping_threshold_usd: float | None = Field(
        description="the basket subtotal from which the free levels ship free; null: none ships free")
    free_shipping_levels: list[str]
    currency: Literal["USD"] = "USD"


class CurvePoint(BaseModel):
    price_usd: float
    units_per_view: float
    expected_units_per_day: float
    revenue_per_day_usd: float
    profit_per_day_usd: float


class CurveAnswer(BaseModel):
    sku: str
    model: ModelRef
    unit_cost_usd: float
    reference_price_usd: float
    elasticity: float | None = Field(description="d log demand / d log price at the reference price")
    best_price_usd: float = Field(description="the most profitable point of the grid, before guardrails")
    points: list[CurvePoint]


def _subject(customer: Customer, snapshot: FeatureSnapshot) -> Subject:
    zone = snapshot.zone(customer.postal_code) if customer.postal_code else None
    return Subject(customer.customer_id, customer.session_id, customer.segment, customer.country, customer.region,
                   zone.zone if zone else None)


def _model_ref(loaded: LoadedModel | None) -> ModelRef | None:
    return ModelRef(name=loaded.name, alias=loaded.alias, version=loaded.version) if loaded else None


def _features_as_of(snapshot: FeatureSnapshot, sku: str) -> date | None:
    record = snapshot.pricing.records.get(sku)
    return record.get("as_of_date") if record else None


@dataclass(frozen=True, slots=True)
class PriceTemplate:
    """A price answer but for its decision id (empty), and its JSON after the id: the same for every
    request of the same SKU, variant and price book, so it is built once per book (`PriceBook.answer`)."""

    answer: PriceAnswer
    json_after_id: str
    propensity: float = 1.0  # the probability the strategy had of choosing this price

    @classmethod
    def of(cls, answer: PriceAnswer, propensity: float = 1.0) -> PriceTemplate:
        text = answer.model_dump_json()
        if not text.startswith(_NO_ID_JSON):  # decision_id is the first field of every Provenance
            raise AssertionError(f"{type(answer).__name__} JSON does not start with its decision_id: {text[:40]}")
        return cls(answer, text[len(_NO_ID_JSON):], propensity)

    def json(self, decision_id: str) -> str:
        """The answer's JSON with `decision_id` (a UUID: nothing to escape)."""
        return f'{{"decision_id":"{decision_id}"{self.json_after_id}'


_NO_ID_JSON = '{"decision_id":""'


def price_sku(serving, sku: str, assignment: Assignment, snapshot: FeatureSnapshot) -> PriceTemplate:
    """The answer for one SKU under `assignment` (see the module docstring for the fallbacks)."""
    loaded, fallback_reason = None, None
    if assignment.strategy in ("model", LIVE, BANDIT):
        loaded = serving.models.get(PRICING_MODEL, assignment.model_alias or CHAMPION)
        if loaded is None:
            fallback_reason = f"no {assignment.model_alias} pricing model loaded"
    if assignment.strategy == BANDIT and loaded is not None:
        chosen = serving.bandit.decide(sku, snapshot, loaded.model, assignment.explore_share, loaded.version)
        if chosen is not None:  # drawn per request: no answer to keep
            return PriceTemplate.of(PriceAnswer(
                decision_id="", experiment=assignment.experiment, variant=assignment.variant, strategy=BANDIT,
                model=_model_ref(loaded), rule_version=None, fallback=False, fallback_reason=None, sku=sku,
                price_usd=chosen.price_usd, guardrails=list(chosen.guardrails),
                features_as_of=_features_as_of(snapshot, sku)), chosen.propensity)
        fallback_reason = "no open bandit price for this SKU: the model's daily price"
    live = assignment.strategy == LIVE and loaded is not None
    if live and not serving.live_features.snapshot.available:
        live, fallback_reason = False, "no live features: the live tables do not exist yet"
    book_key = (snapshot, loaded.model if loaded else None, loaded.version if loaded else None)
    book = serving.live_prices.book(*book_key) if live else serving.prices.book(*book_key)
    priced = book.get(sku)
    if priced is None:
        raise HTTPException(404, f"no price for {sku}: it is not in the catalogue's pricing features "
                                 "(unknown SKU, or no unit cost yet)")
    if fallback_reason:
        serving.metrics.record_fallback("pricing", fallback_reason)

    def build() -> PriceTemplate:
        return PriceTemplate.of(PriceAnswer(
            decision_id="", experiment=assignment.experiment, variant=assignment.variant,
            strategy=LIVE if live else "optimizer" if loaded else RULE_BASED, model=_model_ref(loaded),
            rule_version=None if loaded else RULE_VERSION, fallback=fallback_reason is not None,
            fallback_reason=fallback_reason, sku=sku, price_usd=round(priced.price_usd, 2),
            guardrails=list(priced.guardrails), features_as_of=_features_as_of(snapshot, sku),
            live_features_as_of=priced.live_features_as_of, reason_code=priced.reason_code))

    # The book's key already holds the model version and the feature snapshot.
    key = (sku, assignment.experiment, assignment.variant, loaded.alias if loaded else None, fallback_reason)
    return book.answer(sku, key, build) if live else book.answer(key, build)


def _log(serving, answer: Provenance, decision_id: str, answer_json: str, endpoint: str, customer: Customer,
         request_json: str, started: float, **fields) -> None:
    serving.metrics.record_decision(endpoint, answer.experiment, answer.variant, answer.strategy)
    serving.decision_log.log(decision_record(
        decision_id=decision_id, endpoint=endpoint, customer_id=customer.customer_id,
        session_id=customer.session_id, experiment=answer.experiment, variant=answer.variant,
        strategy=answer.strategy, model_name=answer.model.name if answer.model else None,
        model_version=answer.model.version if answer.model else answer.rule_version,
        request=request_json, response=answer_json, fallback=answer.fallback,
        latency_ms=(time.perf_counter() - started) * 1000, **fields))


def _price_fields(answer: PriceAnswer, propensity: float) -> dict:
    """The decision log fields of a price answer."""
    as_of = answer.live_features_as_of
    return dict(sku=answer.sku, price_usd=answer.price_usd, guardrails=answer.guardrails,
                live_features_as_of=as_of.isoformat() if as_of is not None else None, reason_code=answer.reason_code,
                propensity=propensity)


async def _request_json(request: Request) -> str:
    """The request as the client sent it, for the decision log (FastAPI read and validated it already)."""
    return (await request.body()).decode()


def _json_response(answer_json: str) -> Response:
    # The answer is serialized once, for the response and the decision log: returning the model would
    # have FastAPI validate and serialize it again (the `response_model` still documents it).
    return Response(answer_json, media_type="application/json")


def build_router() -> APIRouter:
    """The `/v1` router."""
    router = APIRouter(prefix="/v1", route_class=GatewayRoute)
    responses = {401: {"description": "missing API key"}, 403: {"description": "unknown or revoked API key"},
                 404: {"description": "unknown SKU"}, 413: {"description": "request body too large"},
                 422: {"description": "invalid request"}, 429: {"description": "rate limit exceeded"}}

    @router.post("/prices", tags=["pricing"], responses=responses, response_model=PriceAnswer)
    async def price(body: PriceRequest, request: Request) -> Response:
        """The price of one SKU for this customer: the variant's strategy, guardrails applied."""
        serving = serving_of(request)
        started = time.perf_counter()
        snapshot = serving.features.snapshot
        assignment = serving.experiments.assign("pricing", _subject(body.customer, snapshot))
        template = price_sku(serving, body.sku, assignment, snapshot)
        decision_id = new_decision_id()
        answer, answer_json = template.answer, template.json(decision_id)
        _log(serving, answer, decision_id, answer_json, "pricing", body.customer, await _request_json(request),
             started, **_price_fields(answer, template.propensity))
        return _json_response(answer_json)

    @router.post("/prices/basket", tags=["pricing"], responses=responses, response_model=BasketPriceAnswer)
    async def price_basket(body: BasketPriceRequest, request: Request) -> Response:
        """Prices of every line of a basket (one decision per line, one variant for the customer)."""
        serving = serving_of(request)
        started = time.perf_counter()
        snapshot = serving.features.snapshot
        assignment = serving.experiments.assign("pricing", _subject(body.customer, snapshot))
        lines, propensities = [], []
        for item in body.items:
            template = price_sku(serving, item.sku, assignment, snapshot)
            answer = template.answer
            lines.append(BasketLine(**{**answer.model_dump(), "decision_id": new_decision_id()},
                                    quantity=item.quantity, line_total_usd=round(answer.price_usd * item.quantity, 2)))
            propensities.append(template.propensity)
        request_json = await _request_json(request)
        for line, propensity in zip(lines, propensities, strict=True):
            _log(serving, line, line.decision_id, line.model_dump_json(), "pricing", body.customer, request_json,
                 started, **_price_fields(line, propensity))
        basket = BasketPriceAnswer(lines=lines, total_usd=round(sum(line.line_total_usd for line in lines), 2))
        return _json_response(basket.model_dump_json())

    @router.post("/shipping/estimate", tags=["shipping"], responses=responses, response_model=ShippingAnswer)
    async def shipping_estimate(body: ShippingRequest, request: Request) -> Response:
        """Expected shipping cost of a basket to a postal code, per carrier and service level; cheapest first."""
        serving = serving_of(request)
        started = time.perf_counter()
        snapshot = serving.features.snapshot
        assignment = serving.experiments.assign("shipping", _subject(body.customer, snapshot))
        answer = await estimate_shipping(serving, body, snapshot, assignment)
        answer_json = answer.model_dump_json()
        _log(serving, answer, answer.decision_id, answer_json, "shipping", body.customer,
             await _request_json(request), started, estimate_usd=answer.recommended.estimate_usd,
             charge_usd=answer.recommended.charge_usd, policy_version=answer.shipping_policy_version)
        return _json_response(answer_json)

    @router.get("/prices/{sku}/curve", tags=["pricing"], responses=responses)
    async def price_curve(sku: Annotated[str, Path(pattern=SKU_PATTERN, examples=["SKU-001362"])], serving: Components,
                    points: Annotated[int, Query(ge=3, le=201)] = 21,
                    low: Annotated[float, Query(gt=0, le=1)] = 0.7,
                    high: Annotated[float, Query(ge=1, le=3)] = 1.3) -> CurveAnswer:
        """The champion model's price-response curve: price grid (low..high x the SKU's reference price) ->
        units per view, expected units, revenue and profit per day."""
        loaded = serving.models.get(PRICING_MODEL, CHAMPION)
        if loaded is None:
            raise HTTPException(503, "no champion pricing model is loaded yet", headers={"Retry-After": "15"})
        row = feature_frame(serving.features.snapshot, [sku])  # one row, not the catalogue, per request
        if row.empty or pd.isna(row.loc[0, "unit_cost_usd"]):
            raise HTTPException(404, f"no pricing features with a unit cost for {sku}")
        reference = float(reference_price(row)[0])
        if not np.isfinite(reference):
            raise HTTPException(404, f"no reference price for {sku} (no recent views and no list price)")
        grid = reference * np.linspace(low, high, points)
        demand_fn = loaded.model.demand_fn(row)
        curve = response_curve(demand_fn, float(row.loc[0, "unit_cost_usd"]), grid)
        per_view = loaded.model.units_per_view(row, grid[None, :])[0]
        elasticity = float(implied_elasticity(demand_fn, np.array([reference]), eps=0.05)[0])
        return CurveAnswer(
            sku=sku, model=_model_ref(loaded), unit_cost_usd=float(row.loc[0, "unit_cost_usd"]),
            reference_price_usd=reference, elasticity=elasticity if np.isfinite(elasticity) else None,
            best_price_usd=float(grid[int(np.argmax(curve["profit"]))]),
            points=[CurvePoint(price_usd=p, units_per_view=u, expected_units_per_day=d, revenue_per_day_usd=r,
                               profit_per_day_usd=g)
                    for p, u, d, r, g in zip(grid, per_view, curve["demand"], curve["revenue"], curve["profit"],
                                             strict=True)])

    return router


async def estimate_shipping(serving, body: ShippingRequest, snapshot: FeatureSnapshot, assignment: Assignment
                            ) -> ShippingAnswer:
    """Options per carrier and service level: the shipping model's expected invoice, or the carrier's price
    when the variant says so (`rule_based`) or no model is loaded (a fallback). The carrier's price is its
    quote, else its cached quote, else its rate card (`serving.carrier_quotes`); the model takes it in the
    rate card's place."""
    zone = snapshot.zone(body.postal_code)
    if zone is None:
        raise HTTPException(422, f"postal code {body.postal_code.strip()!r} is not in the delivery zone chart")
    weight = volume = 0.0
    for item in body.items:
        product = snapshot.product(item.sku)
        if product is None:
            raise HTTPException(422, f"unknown SKU {item.sku} in the basket")
        measures = (product.weight_kg, product.length_cm, product.width_cm, product.height_cm)
        if any(m is None for m in measures):
            raise HTTPException(422, f"{item.sku} has no weight or dimensions in the catalogue")
        weight += item.quantity * product.weight_kg
        volume += item.quantity * product.length_cm * product.width_cm * product.height_cm
    levels = (body.service_level,) if body.service_level else ("standard", "express")
    cards = [card for (_, level, card_zone), card in sorted(snapshot.rate_cards.items())
             if level in levels and card_zone == zone.zone]
    if not cards:
        raise HTTPException(422, f"no carrier serves zone {zone.zone} at service level {', '.join(levels)}")
    billable = np.array([float(card.billable_kg(weight, volume)) for card in cards])
    rate_card = np.array([float(card.cost_usd(b, zone.is_remote)) for card, b in zip(cards, billable, strict=True)])
    to_quote = [Parcel(c.carrier, c.service_level, body.postal_code.strip(), zone.zone, zone.is_remote, weight, volume,
                       round(float(r), 2)) for c, r in zip(cards, rate_card, strict=True)]
    prices: list[CarrierPrice] = (await serving.carriers.prices(to_quote) if serving.carriers is not None else
                                  [CarrierPrice(p.rate_card_usd, "rate_card", "no quote service") for p in to_quote])
    quoted = np.array([p.price_usd for p in prices])
    loaded, fallback_reason = None, None
    if assignment.strategy == "model":
        alias = assignment.model_alias or CHAMPION
        loaded = serving.models.get(SHIPPING_MODEL, alias)
        fallback_reason = None if loaded else f"no {alias} shipping model loaded"
    estimate = quoted
    if loaded is not None:
        parcels = pd.DataFrame({
            "carrier": [c.carrier for c in cards], "service_level": [c.service_level for c in cards],
            "delivery_zone": zone.zone, "is_remote": zone.is_remote, "order_date": pd.Timestamp(snapshot.day),
            "billable_weight_kg": billable, "actual_weight_kg": weight, "volume_cm3": volume,
            "rate_card_cost_usd": quoted})
        estimate = loaded.model.expected_cost(parcels)
    if fallback_reason:
        serving.metrics.record_fallback("shipping", fallback_reason)
    policy = variant_policy(assignment)
    estimate = np.round(np.asarray(estimate, dtype=float), 2)
    charge = option_charges(policy, estimate, [c.service_level for c in cards], zone.zone, body.subtotal_usd)
    options = sorted((ShippingOption(carrier=c.carrier, service_level=c.service_level, estimate_usd=float(e),
                                     rate_card_usd=round(float(r), 2), billable_weight_kg=round(float(b), 3),
                                     charge_usd=float(g), quote_usd=round(p.price_usd, 2), source=p.source,
                                     source_reason=p.reason)
                      for c, e, r, b, g, p in zip(cards, estimate, rate_card, billable, charge, prices, strict=True)),
                     key=lambda o: o.estimate_usd)
    return ShippingAnswer(
        decision_id=new_decision_id(), experiment=assignment.experiment, variant=assignment.variant,
        strategy="model" if loaded else "rate_card", model=_model_ref(loaded),
        rule_version=None if loaded else "rate_card", fallback=fallback_reason is not None,
        fallback_reason=fallback_reason, postal_code=body.postal_code.strip(),
        delivery_zone=zone.zone, is_remote=zone.is_remote, actual_weight_kg=round(weight, 3),
        volume_cm3=round(volume, 1), recommended=options[0], options=options, subtotal_usd=body.subtotal_usd,
        shipping_policy_version=policy.version, free_shipping_threshold_usd=policy.free_shipping_threshold_usd,
        free_shipping_levels=list(policy.free_shipping_levels))
