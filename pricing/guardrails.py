"""Pricing guardrails: the business rules every price passes through, with a reason code for each clamp.

Grain: every array is one row per SKU (all inputs broadcast to one length). NaN means "unknown" for the
current price (a new SKU: no daily change limit), the competitor minimum price (no band) and MAP (no MAP
floor); the candidate and the unit cost must be known. Pure numpy; the policy in force
(`DEFAULT_GUARDRAILS`) is the `guardrails` section of the pricing policy file (`pricing.policy`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from pricing.policy import policy_section


@dataclass(frozen=True)
class Guardrails:
    """The business rules of one pricing policy. The values in force are the policy file's
    (`DEFAULT_GUARDRAILS`); `from_dict` overrides some of them from a config section."""

    min_margin_pct: float  # price >= unit cost * (1 + min_margin_pct / 100)
    max_daily_change_pct: float  # |price / current price - 1| <= max_daily_change_pct / 100
    competitor_band: tuple[float, float]  # price / competitor minimum price within the band
    respect_map: bool  # price >= MAP where a MAP is set
    price_ending: float | None  # prices end in e.g. .99; None leaves prices as clamped

    def __post_init__(self) -> None:
        band = tuple(float(x) for x in self.competitor_band)
        if len(band) != 2 or not (0 < band[0] <= band[1] < np.inf):
            raise ValueError(f"competitor_band must be two ratios 0 < low <= high, got {self.competitor_band!r}")
        object.__setattr__(self, "competitor_band", band)
        object.__setattr__(self, "min_margin_pct", float(self.min_margin_pct))
        object.__setattr__(self, "max_daily_change_pct", float(self.max_daily_change_pct))
        if not 0 <= self.min_margin_pct < np.inf:
            raise ValueError(f"min_margin_pct must be >= 0, got {self.min_margin_pct}")
        # Below 100% so that the lowest price the window allows stays positive.
        if not 0 < self.max_daily_change_pct < 100:
            raise ValueError(f"max_daily_change_pct must be in (0, 100), got {self.max_daily_change_pct}")
        if not isinstance(self.respect_map, bool):
            raise ValueError(f"respect_map must be true or false, got {self.respect_map!r}")
        if self.price_ending is not None:
            ending = float(self.price_ending)
            # Endings are whole cents: the ending step rounds prices to cents.
            if not (0 <= ending < 1 and round(ending, 2) == ending):
                raise ValueError(f"price_ending must be whole cents in [0, 1) or null, got {self.price_ending!r}")
            object.__setattr__(self, "price_ending", ending)

    @classmethod
    def from_dict(cls, section: Mapping[str, Any] | None) -> Guardrails:
        """Guardrails from a config section (e.g. `yaml.safe_load(...)["guardrails"]`); missing keys keep
        the policy file's values, unknown keys are an error."""
        section = dict(section or {})
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(section) - set(known))
        if unknown:
            raise ValueError(f"unknown guardrail settings {unknown}; known: {known}")
        return dataclasses.replace(DEFAULT_GUARDRAILS, **section)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON/YAML values (the inverse of `from_dict`)."""
        values = dataclasses.asdict(self)
        values["competitor_band"] = list(self.competitor_band)
        return values

    @property
    def margin_factor(self) -> float:
        return 1 + self.min_margin_pct / 100

    @property
    def max_daily_change(self) -> float:
        return self.max_daily_change_pct / 100


DEFAULT_GUARDRAILS = policy_section(Guardrails, "guardrails")


class Reason(StrEnum):
    """Why a guardrail touched a price. Adjustments are recorded exactly when that step moved the price;
    notes record a conflict or a rule that could not apply. docs/pricing.md explains each code."""

    # Adjustments: the clamp names the rule that pushed the price the way it moved (in a conflict, the loser
    # too: it pulls as far as the winner allows).
    MARGIN_FLOOR = "MARGIN_FLOOR"  # raised to unit cost * (1 + min margin)
    MAP_FLOOR = "MAP_FLOOR"  # raised to MAP (MAP above the margin floor)
    DAILY_CHANGE_LIMIT = "DAILY_CHANGE_LIMIT"  # moved back towards the current price
    COMPETITOR_BAND_LOW = "COMPETITOR_BAND_LOW"  # raised towards the band's low end
    COMPETITOR_BAND_HIGH = "COMPETITOR_BAND_HIGH"  # lowered towards the band's high end
    PRICE_ENDING = "PRICE_ENDING"  # moved to the nearest allowed ending (e.g. .99) inside the interval
    # Notes.
    INFEASIBLE = "INFEASIBLE"  # the rules had no common price: the *_OVERRIDDEN codes name the losers
    DAILY_CHANGE_OVERRIDDEN = "DAILY_CHANGE_OVERRIDDEN"  # the floor lies above the change window: floor won
    COMPETITOR_BAND_OVERRIDDEN = "COMPETITOR_BAND_OVERRIDDEN"  # band misses what floor and change allow
    PRICE_ENDING_UNAVAILABLE = "PRICE_ENDING_UNAVAILABLE"  # no allowed ending fits: clamped price kept
    NO_CURRENT_PRICE = "NO_CURRENT_PRICE"  # no current price: daily change limit not applied
    NO_COMPETITOR = "NO_COMPETITOR"  # no competitor price: band not applied
    # Live repricing only (pricing.live), after the ones above so that the stored bits do not move.
    LIVE_DAILY_MOVE_LIMIT = "LIVE_DAILY_MOVE_LIMIT"  # moved back within the bound around the day's first price
    LIVE_DAILY_MOVE_OVERRIDDEN = "LIVE_DAILY_MOVE_OVERRIDDEN"  # the floor lies above that bound: floor won
    LIVE_CHANGE_LIMIT = "LIVE_CHANGE_LIMIT"  # the hour's live changes are used up: the previous price kept

    @property
    def bit(self) -> int:
        return _BITS[self]


_BITS = {reason: 1 << i for i, reason in enumerate(Reason)}
REASON_DTYPE = np.uint16  # one bit per Reason
CLAMP_REASONS = (Reason.MARGIN_FLOOR, Reason.MAP_FLOOR, Reason.DAILY_CHANGE_LIMIT, Reason.COMPETITOR_BAND_LOW,
                 Reason.COMPETITOR_BAND_HIGH)


def reason_bits(reasons: Iterable[Reason | str]) -> int:
    """The bit mask of some reasons (the inverse of `decode_reasons`)."""
    return sum({Reason(r).bit for r in reasons})


def decode_reasons(bits: int) -> list[Reason]:
    """The reasons set in one row's bit mask, in declaration order."""
    return [reason for reason in Reason if int(bits) & reason.bit]


@dataclass(frozen=True, eq=False)
class Decision:
    """Prices decided for a batch, one row per SKU in input order: the final price, the strategy's candidate
    before the guardrails, and the reason codes as a bit mask (`reasons()` decodes them)."""

    strategy: str
    prices: np.ndarray
    candidates: np.ndarray
    reason_mask: np.ndarray

    def __len__(self) -> int:
        return len(self.prices)

    def reasons(self) -> list[list[Reason]]:
        """Per row, the reason codes applied (Reason is a str: JSON-able as is)."""
        decoded = {bits: decode_reasons(bits) for bits in np.unique(self.reason_mask).tolist()}  # few distinct
        return [list(decoded[bits]) for bits in self.reason_mask.tolist()]

    def to_frame(self) -> pd.DataFrame:
        """One row per SKU: price, candidate, reasons (list of str), strategy."""
        return pd.DataFrame({
            "price": self.prices,
            "candidate": self.candidates,
            "reasons": [[str(r) for r in row] for row in self.reasons()],
            "strategy": self.strategy,
        })

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-able dict per SKU, as the API returns it."""
        return [
            {"price": float(price), "candidate": float(candidate), "reasons": [str(r) for r in reasons],
             "strategy": self.strategy}
            for price, candidate, reasons in zip(self.prices, self.candidates, self.reasons(), strict=True)
        ]


@dataclass(frozen=True, eq=False)
class Interval:
    """Per SKU, the prices the guardrails allow: [low, high] (high may be +inf), the rule that sets each end
    (a Reason bit: the clamp recorded when a price is moved to that end) and the notes (conflicts, rules
    that did not apply)."""

    low: np.ndarray
    high: np.ndarray
    low_reason: np.ndarray
    high_reason: np.ndarray
    notes: np.ndarray


def positive_prices(name: str, values, required: bool = True) -> np.ndarray:
    """A float array of positive prices; NaN (unknown) only where not required. None means all unknown."""
    if values is None:
        if required:
            raise ValueError(f"{name} is required")
        return np.array(np.nan)
    array = np.asarray(values, dtype=float)
    valid = (array > 0) & np.isfinite(array)
    if not required:
        valid |= np.isnan(array)
    if not np.all(valid):
        rows = np.flatnonzero(~valid)
        allowed = "positive and finite" if required else "positive and finite, or NaN for unknown"
        raise ValueError(f"{name} must be {allowed}: {rows.size} bad row(s), first at {rows[:5].tolist()}: "
                         f"{array.ravel()[rows[:5]].tolist()}")
    return array


@dataclass(frozen=True, eq=False)
class Market:
    """Validated guardrail inputs, one row per SKU: unit cost (known), current, competitor minimum and MAP
    prices (NaN = unknown)."""

    unit_cost: np.ndarray
    current_price: np.ndarray
    competitor_price: np.ndarray
    map_price: np.ndarray

    @classmethod
    def of(cls, unit_cost, current_price=None, competitor_price=None, map_price=None, *, rows_like=None) -> Market:
        """Validate and broadcast scalars and 1-D arrays (and the shape of `rows_like`) to one row per SKU."""
        named = {
            "unit_cost": positive_prices("unit_cost", unit_cost),
            "current_price": positive_prices("current_price", current_price, required=False),
            "competitor_price": positive_prices("competitor_price", competitor_price, required=False),
            "map_price": positive_prices("map_price", map_price, required=False),
        }
        shapes = {name: a.shape for name, a in named.items()} | {"candidate": np.shape(rows_like)}
        try:
            shape = np.broadcast_shapes(*shapes.values())
        except ValueError as err:
            raise ValueError(f"inputs must have one row per SKU (or be scalars), got shapes {shapes}") from err
        if len(shape) > 1:
            raise ValueError(f"inputs must be scalars or 1-D arrays, got shapes {shapes}")
        shape = shape or (1,)
        return cls(**{name: np.broadcast_to(a, shape).astype(float) for name, a in named.items()})

    @property
    def shape(self) -> tuple[int, ...]:
        return self.unit_cost.shape


def _bits(where: np.ndarray, reason_bits_: int | np.ndarray) -> np.ndarray:
    """`reason_bits_` where the condition holds, else no reason."""
    return np.where(where, reason_bits_, 0).astype(REASON_DTYPE)


def price_floor(market: Market, rails: Guardrails) -> tuple[np.ndarray, np.ndarray]:
    """Per SKU the lowest price any rule allows, max(cost * (1 + min margin), MAP), and its reason bit."""
    margin_floor = market.unit_cost * rails.margin_factor
    map_binds = rails.respect_map & (market.map_price > margin_floor)  # NaN compares False: no MAP floor
    return (np.where(map_binds, market.map_price, margin_floor),
            np.where(map_binds, Reason.MAP_FLOOR.bit, Reason.MARGIN_FLOOR.bit))


def market_interval(market: Market, rails: Guardrails) -> Interval:
    """`feasible_interval` of validated inputs."""
    shape = market.shape
    notes = np.zeros(shape, dtype=REASON_DTYPE)

    # 1. The floor.
    low, low_reason = price_floor(market, rails)
    high = np.full(shape, np.inf)
    high_reason = np.zeros(shape, dtype=REASON_DTYPE)

    # 2. The daily change window.
    known = np.isfinite(market.current_price)
    notes |= _bits(~known, Reason.NO_CURRENT_PRICE.bit)
    window_low = market.current_price * (1 - rails.max_daily_change)
    window_high = market.current_price * (1 + rails.max_daily_change)
    overridden = known & (window_high < low)
    notes |= _bits(overridden, Reason.INFEASIBLE.bit | Reason.DAILY_CHANGE_OVERRIDDEN.bit)
    raise_low = known & ~overridden & (window_low > low)
    low = np.where(raise_low, window_low, low)
    low_reason = np.where(raise_low, Reason.DAILY_CHANGE_LIMIT.bit, low_reason)
    # Overridden, the window still pulls the price down: as far as the floor.
    high = np.where(overridden, low, np.where(known, window_high, high))
    high_reason = np.where(known, Reason.DAILY_CHANGE_LIMIT.bit, high_reason)

    # 3. The competitor band.
    known = np.isfinite(market.competitor_price)
    notes |= _bits(~known, Reason.NO_COMPETITOR.bit)
    band_low = market.competitor_price * rails.competitor_band[0]
    band_high = market.competitor_price * rails.competitor_band[1]
    above = known & (band_low > high)  # the band lies wholly above what the floor and the window allow
    below = known & (band_high < low)
    notes |= _bits(above | below, Reason.INFEASIBLE.bit | Reason.COMPETITOR_BAND_OVERRIDDEN.bit)
    raise_low = known & ~below & (band_low > low)
    lower_high = known & ~above & (band_high < high)
    # Overridden, the band still pulls the price towards it: as far as the other rules allow.
    new_low = np.where(above, high, np.where(raise_low, band_low, low))
    new_high = np.where(below, low, np.where(lower_high, band_high, high))
    low_reason = np.where(above | raise_low, Reason.COMPETITOR_BAND_LOW.bit, low_reason)
    high_reason = np.where(below | lower_high, Reason.COMPETITOR_BAND_HIGH.bit, high_reason)
    return Interval(new_low, new_high, low_reason.astype(REASON_DTYPE), high_reason.astype(REASON_DTYPE), notes)


def feasible_interval(unit_cost, current_price=None, competitor_price=None, map_price=None,
                      rails: Guardrails = DEFAULT_GUARDRAILS) -> Interval:
    """The prices each SKU may take, one row per SKU. Rules in priority order, each narrowing what the ones
    above allow:
    1. floor = max(cost * (1 + min margin), MAP): always holds;
    2. the daily change window around the current price: if it lies wholly below the floor, the price is
       pinned to the floor (DAILY_CHANGE_OVERRIDDEN);
    3. the competitor band: if it misses what 1-2 allow, the price is pinned to the allowed end nearest
       the band (COMPETITOR_BAND_OVERRIDDEN).
    Each overridden rule also sets INFEASIBLE.
    """
    return market_interval(Market.of(unit_cost, current_price, competitor_price, map_price), rails)


def _with_ending(price: np.ndarray, interval: Interval, ending: float) -> tuple[np.ndarray, np.ndarray]:
    """The nearest price ending in `ending` inside the interval (ties go up), and where none fits."""
    # Only the two endings around the price can be nearest; rounding to cents drops float residue (12.99).
    below = np.round(np.floor(price - ending) + ending, 2)
    above = np.round(below + 1, 2)
    below_fits = (below >= interval.low) & (below <= interval.high)
    above_fits = (above >= interval.low) & (above <= interval.high)
    take_above = above_fits & (~below_fits | (above - price <= price - below))
    ended = np.where(take_above, above, np.where(below_fits, below, price))
    return ended, ~(below_fits | above_fits)


def decide(candidate: np.ndarray, interval: Interval, rails: Guardrails, strategy: str) -> Decision:
    """Clamp validated candidates into their interval, then apply the price ending inside it."""
    clamped = np.clip(candidate, interval.low, interval.high)
    mask = interval.notes | _bits(candidate < interval.low, interval.low_reason)
    mask |= _bits(candidate > interval.high, interval.high_reason)
    prices = clamped
    if rails.price_ending is not None:
        prices, unavailable = _with_ending(clamped, interval, rails.price_ending)
        mask |= _bits(prices != clamped, Reason.PRICE_ENDING.bit)
        mask |= _bits(unavailable, Reason.PRICE_ENDING_UNAVAILABLE.bit)
    return Decision(strategy, prices, candidate, mask)


def apply_guardrails(candidate, unit_cost, current_price=None, competitor_price=None, map_price=None,
                     rails: Guardrails = DEFAULT_GUARDRAILS, *, strategy: str = "guardrails") -> Decision:
    """Final prices for candidate prices, one row per SKU: each candidate clamped into `feasible_interval`
    (recording the rule that moved it), then moved to the nearest allowed ending inside the interval."""
    candidate = positive_prices("candidate", candidate)
    market = Market.of(unit_cost, current_price, competitor_price, map_price, rows_like=candidate)
    return decide(np.broadcast_to(candidate, market.shape).astype(float), market_interval(market, rails), rails,
                  strategy)
