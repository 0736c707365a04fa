"""Live repricing: a SKU's price moved by its live features (competitor prices, demand in the last hour),
within the live guardrails of the policy file (`pricing.policy.LivePolicy`).

Grain: every array is one row per SKU. A live move has a reason (`LiveReason`): `COMPETITOR_MOVE` when the
live competitor minimum differs from the daily features' by more than `competitor_move_pct`, else
`DEMAND_SURGE` / `DEMAND_SLUMP` when the current 60-minute demand index is above / below its threshold.
Without a reason the live price is the daily book's. With one, the strategy (optimizer or rule-based)
decides again on the daily features with the live inputs (`live_frame`), and the price passes through
the guardrails with two more rules:
- the daily move bound: within +-`max_daily_move_pct` of the SKU's first price of the UTC day (it wins
  over the daily change window and the competitor band; the floor wins over it);
- the change rate: after `max_changes_per_hour` changes in the rolling hour the previous price is kept,
  unless it lies below today's floor (the floor wins).
Both need per-SKU history, kept by `LiveGuardState` (in memory, no I/O). Pure numpy and pandas.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

import numpy as np
import pandas as pd

from pricing.guardrails import (
    DEFAULT_GUARDRAILS,
    REASON_DTYPE,
    Guardrails,
    Interval,
    Market,
    Reason,
    decide,
    market_interval,
    price_floor,
)
from pricing.optimizer import DemandFn, optimize
from pricing.policy import LIVE_POLICY, LivePolicy
from pricing.rules import rule_based

LIVE = "live"
# Demand-model inputs a live demand index scales: the SKU's views (the level of demand: it scales expected
# units, not the most profitable price) and the category's momentum (1 = steady), the input through which
# a model can learn that conversion, hence the best price, follows a surge.
DEMAND_SCALED = ("sku_views_7d", "category_views_7d_vs_28d")
CHANGE_WINDOW = timedelta(hours=1)


class LiveReason(StrEnum):
    """Why live repricing moved a price away from the daily book's (one per answer, in this priority)."""

    COMPETITOR_MOVE = "COMPETITOR_MOVE"
    DEMAND_SURGE = "DEMAND_SURGE"
    DEMAND_SLUMP = "DEMAND_SLUMP"


@dataclass(frozen=True, eq=False)
class LiveSignals:
    """Per SKU, which live inputs moved past their threshold; NaN inputs move nothing."""

    competitor_moved: np.ndarray
    surge: np.ndarray
    slump: np.ndarray

    @property
    def moved(self) -> np.ndarray:
        return self.competitor_moved | self.surge | self.slump

    def reasons(self) -> list[LiveReason | None]:
        """Per SKU the reason code of its move (None: no move), competitor first."""
        return [LiveReason.COMPETITOR_MOVE if c else LiveReason.DEMAND_SURGE if s else
                LiveReason.DEMAND_SLUMP if d else None
                for c, s, d in zip(self.competitor_moved.tolist(), self.surge.tolist(), self.slump.tolist(),
                                   strict=True)]


def live_signals(daily_competitor, live_competitor, demand_index, policy: LivePolicy = LIVE_POLICY) -> LiveSignals:
    """Which thresholds each SKU's live features cross. A live competitor minimum where the daily
    features had none is a move; no live competitor price (NaN) is none."""
    daily, live, index = (np.atleast_1d(np.asarray(a, dtype=float)) for a in
                          (daily_competitor, live_competitor, demand_index))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_moved = np.abs(live / daily - 1) > policy.competitor_move
    competitor_moved = np.isfinite(live) & (~np.isfinite(daily) | ratio_moved)
    return LiveSignals(competitor_moved, index > policy.demand_surge_index, index < policy.demand_slump_index)


def live_frame(frame: pd.DataFrame, live_competitor, demand_index, signals: LiveSignals) -> pd.DataFrame:
    """The daily features (`gold.pricing_features` columns, one row per SKU) with the live inputs that moved:
    the live competitor minimum where it moved, `DEMAND_SCALED` columns times the demand index where
    demand surged or slumped."""
    live = frame.copy()
    live["competitor_min_price_usd"] = np.where(
        signals.competitor_moved, np.asarray(live_competitor, dtype=float),
        pd.to_numeric(frame["competitor_min_price_usd"], errors="coerce").to_numpy(dtype=float))
    scale = np.where(signals.surge | signals.slump, np.asarray(demand_index, dtype=float), 1.0)
    for column in DEMAND_SCALED:
        if column in live:
            live[column] = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float) * scale
    return live


def live_interval(interval: Interval, floor: np.ndarray, first_price: np.ndarray, policy: LivePolicy) -> Interval:
    """`interval` narrowed to the daily move bound first price x [1 - bound, 1 + bound] (NaN first
    price: no bound). The bound wins over the rules that set `interval`, the floor wins over the bound."""
    known = np.isfinite(first_price)
    bound_low, bound_high = first_price * (1 - policy.max_daily_move), first_price * (1 + policy.max_daily_move)
    overridden = known & (bound_high < floor)
    below = known & ~overridden & (bound_high < interval.low)  # the bound lies wholly below the interval
    above = known & (bound_low > interval.high)
    raise_low = known & ~below & (bound_low > interval.low)
    lower_high = known & ~above & (bound_high < interval.high)
    move = Reason.LIVE_DAILY_MOVE_LIMIT.bit
    low = np.where(overridden, floor, np.where(below, bound_high, np.where(raise_low, bound_low, interval.low)))
    high = np.where(overridden, floor, np.where(above, bound_low, np.where(lower_high, bound_high, interval.high)))
    notes = interval.notes | np.where(overridden, Reason.INFEASIBLE.bit | Reason.LIVE_DAILY_MOVE_OVERRIDDEN.bit,
                                      np.where(below | above, Reason.INFEASIBLE.bit, 0)).astype(REASON_DTYPE)
    return Interval(low, high, np.where(raise_low, move, interval.low_reason).astype(REASON_DTYPE),
                    np.where(overridden | lower_high, move, interval.high_reason).astype(REASON_DTYPE), notes)


@dataclass(frozen=True, eq=False)
class LiveDecision:
    """Live prices, one row per SKU in input order: the price, the candidate before the guardrails, the
    guardrail reasons (bit mask, as `Decision`), the live reason code and whether the change limit held
    the previous price."""

    strategy: str
    prices: np.ndarray
    candidates: np.ndarray
    reason_mask: np.ndarray
    reasons: list[LiveReason | None]
    held: np.ndarray


def _numbers(frame: pd.DataFrame, name: str) -> np.ndarray:
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)


def live_decide(frame: pd.DataFrame, demand_fn_of: Callable[[pd.DataFrame], DemandFn] | None, live_competitor,
                demand_index, daily_price, served_price, first_price, changes_last_hour,
                rails: Guardrails = DEFAULT_GUARDRAILS, policy: LivePolicy = LIVE_POLICY) -> LiveDecision:
    """Live prices for the SKUs of `frame` (daily pricing features with `unit_cost_usd`, one row per SKU).

    `demand_fn_of(features)` is the demand model's (e.g. `DemandModel.demand_fn`); None prices rule-based.
    Per SKU: the live competitor minimum and the current 60-minute demand index (NaN: no signal), the
    daily book's price, the price served now, the day's first price (NaN: no daily move bound) and the
    live changes of the last hour."""
    live_competitor, demand_index, daily_price, served_price, first_price = (
        np.asarray(a, dtype=float) for a in (live_competitor, demand_index, daily_price, served_price, first_price))
    changes_last_hour = np.asarray(changes_last_hour)
    signals = live_signals(_numbers(frame, "competitor_min_price_usd"), live_competitor, demand_index, policy)
    features = live_frame(frame, live_competitor, demand_index, signals)
    market = Market.of(_numbers(features, "unit_cost_usd"), _numbers(features, "last_price_usd"),
                       _numbers(features, "competitor_min_price_usd"), _numbers(features, "map_price_usd"))
    candidate = daily_price.copy()
    moved = signals.moved
    if moved.any():
        rows = features.loc[moved].reset_index(drop=True)
        inputs = dict(unit_cost=market.unit_cost[moved], current_price=market.current_price[moved],
                      competitor_price=market.competitor_price[moved], map_price=market.map_price[moved], rails=rails)
        decided = optimize(demand_fn_of(rows), **inputs) if demand_fn_of is not None else rule_based(**inputs)
        # The strategy's candidate before any guardrail: the clamp below records every rule that moves it.
        candidate[moved] = decided.candidates
    floor, _ = price_floor(market, rails)
    decision = decide(candidate, live_interval(market_interval(market, rails), floor, first_price, policy), rails,
                      LIVE)
    prices, mask = decision.prices, decision.reason_mask
    changes = np.round(prices, 2) != np.round(served_price, 2)
    held = (changes_last_hour >= policy.max_changes_per_hour) & changes & (served_price >= floor)
    return LiveDecision(LIVE, np.where(held, served_price, prices), candidate,
                        np.where(held, Reason.LIVE_CHANGE_LIMIT.bit, mask).astype(REASON_DTYPE),
                        signals.reasons(), held)


@dataclass
class _SkuHistory:
    day: date
    first_price: float
    changes: deque[datetime]


class LiveGuardState:
    """Per SKU the history the live guardrails need: the first price of the UTC day and the times of the
    live changes in the last hour. In memory: a process starts with none (see docs/pricing.md)."""

    def __init__(self) -> None:
        self._skus: dict[str, _SkuHistory] = {}

    def inputs(self, skus: list[str], served_price: np.ndarray, now: datetime) -> tuple[np.ndarray, np.ndarray]:
        """Per SKU the day's first price and the changes of the last hour, for `live_decide`. A SKU's first
        decision of a UTC day takes the price served then as the day's first price."""
        first, changes = np.empty(len(skus)), np.zeros(len(skus), dtype=np.int64)
        for i, (sku, served) in enumerate(zip(skus, served_price.tolist(), strict=True)):
            history = self._skus.get(sku)
            if history is None or history.day != now.date():
                history = self._skus[sku] = _SkuHistory(now.date(), served, history.changes if history else deque())
            while history.changes and history.changes[0] <= now - CHANGE_WINDOW:
                history.changes.popleft()
            first[i], changes[i] = history.first_price, len(history.changes)
        return first, changes

    def record(self, skus: list[str], served_price: np.ndarray, prices: np.ndarray, now: datetime) -> None:
        """Count a change for each SKU whose price differs (to the cent) from the one served before."""
        changed = np.round(prices, 2) != np.round(served_price, 2)
        for sku in np.asarray(skus, dtype=object)[changed].tolist():
            self._skus[sku].changes.append(now)

    def changes(self, sku: str) -> list[datetime]:
        """The SKU's change times still kept (the last hour's, as of the last `inputs`)."""
        history = self._skus.get(sku)
        return list(history.changes) if history else []
