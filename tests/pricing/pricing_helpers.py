"""Shared by the pricing tests: hypothesis strategies for markets and guardrails, and an independent,
row-by-row statement of what a guardrail-clean decision is."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from pricing.guardrails import CLAMP_REASONS, Decision, Guardrails, Reason

NAN = float("nan")
REL_TOL = 1e-12  # ratios such as price / current - 1 pick up float residue


@dataclass
class MarketRows:
    unit_cost: np.ndarray
    current_price: np.ndarray
    competitor_price: np.ndarray
    map_price: np.ndarray
    candidate: np.ndarray  # a strategy's own price, for apply_guardrails


def _maybe(ratio: st.SearchStrategy[float]) -> st.SearchStrategy[float]:
    return st.one_of(st.just(NAN), ratio)


def _ratio(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


# Prices are drawn relative to the cost so that conflicts between the rules are common.
_ROW = st.tuples(
    st.floats(0.05, 500, allow_nan=False, allow_infinity=False),
    _maybe(_ratio(0.3, 4.0)),
    _maybe(_ratio(0.3, 4.0)),
    _maybe(_ratio(0.5, 3.0)),
    _ratio(0.05, 6.0),
)


@st.composite
def markets(draw, max_rows: int = 25) -> MarketRows:
    rows = draw(st.lists(_ROW, min_size=1, max_size=max_rows))
    cost, current, competitor, map_, candidate = (np.array(col, dtype=float) for col in zip(*rows, strict=True))
    return MarketRows(cost, cost * current, cost * competitor, cost * map_, cost * candidate)


guardrails = st.builds(
    Guardrails,
    min_margin_pct=_ratio(0.0, 60.0),
    max_daily_change_pct=_ratio(0.5, 50.0),
    competitor_band=st.tuples(_ratio(0.5, 1.0), _ratio(1.0, 1.6)),
    respect_map=st.booleans(),
    price_ending=st.sampled_from([None, 0.99, 0.95, 0.0]),
)


@dataclass
class Expected:
    """What the rules allow for one row, computed from the specification, not from the code under test."""

    floor: float
    low: float
    high: float
    low_reason: Reason
    high_reason: Reason | None
    change_applies: bool  # the change window meets the floor
    band_feasible: bool  # the band meets what the floor and the window allow
    change_overridden: bool
    band_overridden: bool


def expected_interval(cost: float, current: float, competitor: float, map_: float, rails: Guardrails) -> Expected:
    floor = cost * (1 + rails.min_margin_pct / 100)
    low_reason = Reason.MARGIN_FLOOR
    if rails.respect_map and map_ > floor:
        floor, low_reason = map_, Reason.MAP_FLOOR
    low, high, high_reason = floor, math.inf, None
    change_applies = change_overridden = False
    if not math.isnan(current):
        window = (current * (1 - rails.max_daily_change_pct / 100), current * (1 + rails.max_daily_change_pct / 100))
        high_reason = Reason.DAILY_CHANGE_LIMIT
        change_applies = window[1] >= floor
        change_overridden = not change_applies
        if change_applies:
            high = window[1]
            if window[0] > low:
                low, low_reason = window[0], Reason.DAILY_CHANGE_LIMIT
        else:
            high = floor
    band_feasible = band_overridden = False
    if not math.isnan(competitor):
        band = (competitor * rails.competitor_band[0], competitor * rails.competitor_band[1])
        band_feasible = band[0] <= high and band[1] >= low
        band_overridden = not band_feasible
        if band[1] < low:
            high, high_reason = low, Reason.COMPETITOR_BAND_HIGH
        elif band[0] > high:
            low, low_reason = high, Reason.COMPETITOR_BAND_LOW
        else:
            if band[0] > low:
                low, low_reason = band[0], Reason.COMPETITOR_BAND_LOW
            if band[1] < high:
                high, high_reason = band[1], Reason.COMPETITOR_BAND_HIGH
    return Expected(floor, low, high, low_reason, high_reason, change_applies, band_feasible, change_overridden,
                    band_overridden)


def _cents(price: float) -> int:
    return round(price * 100)


def ends_in(price: float, ending: float) -> bool:
    return abs(price * 100 - _cents(price)) < 1e-6 and _cents(price) % 100 == _cents(ending)


def ending_fits(low: float, high: float, ending: float) -> bool:
    first = round(math.ceil(low - ending) + ending, 2)
    if first < low:
        first = round(first + 1, 2)
    return first <= high


def assert_guardrail_clean(decision: Decision, market: MarketRows, rails: Guardrails) -> None:
    """Every rule holds as far as the priorities allow, and the reasons say exactly what moved each price."""
    n = len(market.unit_cost)
    assert decision.prices.shape == decision.candidates.shape == decision.reason_mask.shape == (n,)
    for i, (reasons, price, candidate) in enumerate(zip(decision.reasons(), decision.prices, decision.candidates,
                                                        strict=True)):
        current, competitor = market.current_price[i], market.competitor_price[i]
        want = expected_interval(market.unit_cost[i], current, competitor, market.map_price[i], rails)
        row = f"row {i}: price {price}, candidate {candidate}, reasons {reasons}, expected {want}"

        assert price >= want.floor, row  # the floor always holds, exactly
        assert want.low <= price <= want.high, row
        if want.change_applies:
            assert abs(price / current - 1) <= rails.max_daily_change_pct / 100 + REL_TOL, row
        if want.band_feasible:
            low, high = rails.competitor_band
            assert low - REL_TOL <= price / competitor <= high + REL_TOL, row

        clamped = min(max(candidate, want.low), want.high)
        clamps = [r for r in reasons if r in CLAMP_REASONS]
        if candidate < want.low:
            assert clamps == [want.low_reason], row
        elif candidate > want.high:
            assert clamps == [want.high_reason], row
        else:
            assert clamps == [], row

        fits = rails.price_ending is not None and ending_fits(want.low, want.high, rails.price_ending)
        if fits:
            assert ends_in(price, rails.price_ending), row
            # The nearest ending inside the interval: the endings a unit away are outside or farther.
            for neighbour in (price - 1, price + 1):
                closer = abs(neighbour - clamped) < abs(price - clamped) - 1e-9
                assert not (want.low <= neighbour <= want.high and closer), row
        else:
            assert price == clamped, row
        assert (Reason.PRICE_ENDING in reasons) == (price != clamped), row
        assert (Reason.PRICE_ENDING_UNAVAILABLE in reasons) == (rails.price_ending is not None and not fits), row

        assert (Reason.DAILY_CHANGE_OVERRIDDEN in reasons) == want.change_overridden, row
        assert (Reason.COMPETITOR_BAND_OVERRIDDEN in reasons) == want.band_overridden, row
        assert (Reason.INFEASIBLE in reasons) == (want.change_overridden or want.band_overridden), row
        assert (Reason.NO_CURRENT_PRICE in reasons) == math.isnan(current), row
        assert (Reason.NO_COMPETITOR in reasons) == math.isnan(competitor), row
