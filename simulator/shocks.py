"""Market shocks with known truth: competitor price cuts and raises on sets of SKUs, category demand
surges and slumps, each lasting about an hour.

A `Shock` multiplies, from `start` (inclusive) to `end` (exclusive), either the quotes of its SKUs by
one competitor (or by every competitor that sells them) or the traffic of its category: a surge
brings more shoppers, each behaving as before. Overlapping shocks multiply. Shocks are scripted
(`scripted_shocks`, for tests and the demo) or random (`random_shocks`, a Poisson process, for long
runs). `market_state` gives the shocked market at an instant; the live market (`simulator.market`),
the live shoppers and the oracle (`simulator.truth.oracle_price`) all take it from here.

Times are timezone-aware instants (the wall clock in live runs). The world's state (list prices,
costs, quotes, fx) is that of one day: `live_day(world)`, the day after the history, unless given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from lakehouse.reference import CATEGORIES
from simulator.config import COMPETITORS, rng_for
from simulator.world import World

COMPETITOR_KINDS: tuple[str, ...] = ("competitor_cut", "competitor_raise")
DEMAND_KINDS: tuple[str, ...] = ("demand_surge", "demand_slump")
KINDS: tuple[str, ...] = COMPETITOR_KINDS + DEMAND_KINDS
DEFAULT_DURATION = timedelta(hours=1)
# Random shocks: "about an hour", and multipliers of each kind drawn uniformly in these ranges.
RANDOM_DURATION_MIN = (45.0, 75.0)
RANDOM_MULTIPLIER: dict[str, tuple[float, float]] = {
    "competitor_cut": (0.70, 0.90),
    "competitor_raise": (1.10, 1.25),
    "demand_surge": (1.5, 3.0),
    "demand_slump": (0.3, 0.7),
}
RANDOM_SKUS = (3, 10)  # SKUs hit by a random competitor shock, inclusive
RANDOM_ALL_COMPETITORS = 0.25  # share of random competitor shocks by every competitor at once
SCRIPT_TOP = 5  # SKUs of a scripted competitor shock that names a category but no SKUs

# The demo's script: offsets in seconds from the start, so that a short run sees every shock begin.
SCRIPT: tuple[dict, ...] = (
    {"kind": "competitor_cut", "at_s": 30, "competitor": "megamart", "category": "electronics", "top": 5,
     "multiplier": 0.8},
    {"kind": "demand_surge", "at_s": 60, "category": "toys", "multiplier": 2.0},
    {"kind": "competitor_raise", "at_s": 90, "category": "kitchen", "top": 5, "multiplier": 1.15},
    {"kind": "demand_slump", "at_s": 120, "category": "apparel", "multiplier": 0.5},
)
_SCRIPT_KEYS = {"kind", "at_s", "multiplier", "skus", "competitor", "category", "top", "minutes"}
SHOCK_COLUMNS = ("shock_id", "kind", "start", "end", "multiplier", "competitor", "category", "skus")


@dataclass(frozen=True)
class Shock:
    """One shock. `multiplier` scales competitor quotes (0.8: a 20% cut) or category traffic (2.0: twice
    the shoppers). Competitor shocks name `skus` (canonical ids) and a `competitor` (None: every one
    that sells them); demand shocks name a `category`."""

    shock_id: str
    kind: str
    start: datetime
    multiplier: float
    skus: tuple[str, ...] = ()
    competitor: str | None = None
    category: str | None = None
    duration: timedelta = DEFAULT_DURATION

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown shock kind {self.kind!r}; known: {KINDS}")
        if self.start.tzinfo is None:
            raise ValueError(f"shock {self.shock_id}: start must be timezone-aware, got {self.start}")
        if self.duration <= timedelta(0):
            raise ValueError(f"shock {self.shock_id}: duration must be positive, got {self.duration}")
        down = self.kind in ("competitor_cut", "demand_slump")
        if not (0 < self.multiplier < 1 if down else self.multiplier > 1):
            raise ValueError(f"shock {self.shock_id}: a {self.kind} needs a multiplier "
                             f"{'in (0, 1)' if down else 'above 1'}, got {self.multiplier}")
        if self.kind in COMPETITOR_KINDS:
            if not self.skus or self.category is not None:
                raise ValueError(f"shock {self.shock_id}: a competitor shock names SKUs and no category")
            if self.competitor is not None and self.competitor not in COMPETITORS:
                raise ValueError(f"shock {self.shock_id}: unknown competitor {self.competitor!r}; known: {COMPETITORS}")
        elif self.category not in CATEGORIES or self.skus or self.competitor is not None:
            raise ValueError(f"shock {self.shock_id}: a demand shock names one category of {CATEGORIES} "
                             f"and no SKUs or competitor, got {self.category!r}")
        object.__setattr__(self, "start", self.start.astimezone(UTC))
        object.__setattr__(self, "skus", tuple(str(s) for s in self.skus))

    @property
    def end(self) -> datetime:
        return self.start + self.duration

    def active(self, t: datetime) -> bool:
        return self.start <= t < self.end


def live_day(world: World) -> int:
    """The day whose state live runs use: the day after the history (as the live shoppers do)."""
    return world.n_days


def instants_ns(times) -> np.ndarray:
    """Nanoseconds since the epoch of timezone-aware instants (a datetime, a Timestamp or an array)."""
    index = pd.DatetimeIndex(np.atleast_1d(np.asarray(times, dtype=object)))
    if index.tz is None:
        raise ValueError("times must be timezone-aware")
    out = index.tz_convert(UTC).as_unit("ns").asi8
    return out if np.ndim(times) else out[0]


def _window_ns(shock: Shock) -> tuple[int, int]:
    return int(instants_ns(shock.start)), int(instants_ns(shock.end))


# --- the shocked market --------------------------------------------------------------------------
def competitor_multiplier(world: World, shocks: Sequence[Shock], sku: np.ndarray, competitor: np.ndarray,
                          t_ns: np.ndarray) -> np.ndarray:
    """The product of the active competitor shocks' multipliers, per (SKU index, competitor index,
    instant in ns) broadcast together; 1 where no shock applies."""
    sku, competitor, t_ns = np.broadcast_arrays(np.asarray(sku), np.asarray(competitor), np.asarray(t_ns))
    out = np.ones(sku.shape)
    for shock in shocks:
        if shock.kind not in COMPETITOR_KINDS:
            continue
        target = np.zeros(world.n_skus, dtype=bool)
        target[world.sku_index(shock.skus)] = True
        start, end = _window_ns(shock)
        hit = target[sku] & (t_ns >= start) & (t_ns < end)
        if shock.competitor is not None:
            hit &= competitor == COMPETITORS.index(shock.competitor)
        out = np.where(hit, out * shock.multiplier, out)
    return out


def demand_multiplier(shocks: Sequence[Shock], category: np.ndarray, t_ns: np.ndarray) -> np.ndarray:
    """The product of the active demand shocks' multipliers, per (category index, instant in ns)
    broadcast together; 1 where no shock applies."""
    category, t_ns = np.broadcast_arrays(np.asarray(category), np.asarray(t_ns))
    out = np.ones(category.shape)
    for shock in shocks:
        if shock.kind not in DEMAND_KINDS:
            continue
        start, end = _window_ns(shock)
        hit = (category == CATEGORIES.index(shock.category)) & (t_ns >= start) & (t_ns < end)
        out = np.where(hit, out * shock.multiplier, out)
    return out


@dataclass(frozen=True)
class Multipliers:
    """The shocks' multipliers at one instant: `competitor` [sku, competitor] on quotes, `demand`
    [category] on traffic."""

    competitor: np.ndarray
    demand: np.ndarray


def multipliers_at(world: World, shocks: Sequence[Shock], t: datetime) -> Multipliers:
    """Every SKU's competitor quote multipliers and every category's traffic multiplier at `t`."""
    t_ns = instants_ns(t)
    return Multipliers(
        competitor_multiplier(world, shocks, np.arange(world.n_skus)[:, None], np.arange(len(COMPETITORS))[None, :],
                              t_ns),
        demand_multiplier(shocks, np.arange(len(CATEGORIES)), t_ns))


def shocked_quote(quote: np.ndarray, multiplier: np.ndarray) -> np.ndarray:
    """A competitor's quote under a multiplier, rounded to the cent as quotes are; unchanged at 1."""
    quote = np.asarray(quote, dtype=float)
    return np.where(multiplier == 1.0, quote, np.round(quote * multiplier, 2))


@dataclass(frozen=True)
class MarketState:
    """The shocked market at one instant, on the world's state of `day`. Arrays by SKU index:
    `quote` [sku, competitor] in the competitor's currency (NaN where it does not sell the SKU),
    `competitor_min_usd` [sku] (NaN where no competitor sells it), `traffic` [sku] the SKU's
    category traffic multiplier."""

    day: int
    quote: np.ndarray
    competitor_min_usd: np.ndarray
    traffic: np.ndarray


def market_state(world: World, shocks: Sequence[Shock], t: datetime, day: int | None = None) -> MarketState:
    """Competitor quotes, competitor minimum USD price and traffic multiplier of every SKU at `t`."""
    day = live_day(world) if day is None else day
    m = multipliers_at(world, shocks, t)
    quote = shocked_quote(world.competitor_quote[world.state_day(day)], m.competitor)
    return MarketState(day, quote, world.competitor_min_usd(day, quote), m.demand[world.category])


def breakpoints(shocks: Sequence[Shock], start: datetime, end: datetime) -> list[datetime]:
    """`start` and every shock start or end in (start, end), sorted: the market is constant between them."""
    inner = {t for s in shocks for t in (s.start, s.end) if start < t < end}
    return [start, *sorted(inner)]


# --- scripted and random shocks ------------------------------------------------------------------
def top_skus(world: World, category: str, n: int, competitor: str | None = None, day: int | None = None) -> list[str]:
    """The `n` active SKUs of `category` with the most expected views on `day` that `competitor` sells
    (any competitor when None), most viewed first."""
    day = live_day(world) if day is None else day
    sold = world.covered[:, COMPETITORS.index(competitor)] if competitor else world.covered.any(axis=1)
    candidates = np.flatnonzero(sold & world.is_active(day) & (world.category == CATEGORIES.index(category)))
    views = world.expected_views(day)[candidates]
    return world.sku_id[candidates[np.argsort(-views, kind="stable")[:n]]].tolist()


def scripted_shocks(world: World, start: datetime, script: Sequence[dict] = SCRIPT,
                    duration: timedelta | None = None, day: int | None = None) -> list[Shock]:
    """One shock per script entry (ids `scripted-001`, ...), `at_s` seconds after `start`.

    An entry has `kind`, `at_s`, `multiplier` and its targets: `category` for a demand shock; for a
    competitor shock `skus`, or a `category` whose `top` (5) most viewed SKUs the `competitor` sells
    (any competitor when it names none). `minutes` sets its duration (60); `duration` overrides all.
    """
    shocks = []
    for n, entry in enumerate(script, start=1):
        unknown = set(entry) - _SCRIPT_KEYS
        if unknown:
            raise ValueError(f"script entry {n}: unknown keys {sorted(unknown)}; known: {sorted(_SCRIPT_KEYS)}")
        kind, competitor = entry["kind"], entry.get("competitor")
        skus: tuple[str, ...] = ()
        if kind in COMPETITOR_KINDS and not entry.get("skus") and "category" in entry:
            skus = tuple(top_skus(world, entry["category"], entry.get("top", SCRIPT_TOP), competitor, day))
        else:
            skus = tuple(entry.get("skus", ()))
        length = duration or (timedelta(minutes=entry["minutes"]) if "minutes" in entry else DEFAULT_DURATION)
        shocks.append(Shock(
            f"scripted-{n:03d}", kind, start + timedelta(seconds=entry["at_s"]), float(entry["multiplier"]),
            skus=skus, competitor=competitor, category=None if kind in COMPETITOR_KINDS else entry.get("category"),
            duration=length))
    return shocks


def random_shocks(world: World, start: datetime, end: datetime, rate_per_hour: float, seed: int,
                  day: int | None = None) -> list[Shock]:
    """Shocks starting as a Poisson process of `rate_per_hour` in [start, end), ids `random-001`, ...
    in start order. Kinds are equally likely; durations uniform in 45..75 minutes; multipliers
    uniform in `RANDOM_MULTIPLIER`'s range of the kind; a competitor shock hits 3..10 active SKUs of
    one category sold by one competitor (a quarter of them: by every competitor), a demand shock
    one category. The same arguments give the same shocks."""
    if rate_per_hour < 0 or end <= start:
        raise ValueError(f"need rate_per_hour >= 0 and end > start, got {rate_per_hour}, {start}..{end}")
    day = live_day(world) if day is None else day
    rng = rng_for(seed, "shocks")
    span_us = int((end - start) / timedelta(microseconds=1))
    n = int(rng.poisson(rate_per_hour * span_us / 3.6e9))
    offsets = np.sort(rng.integers(0, span_us, n))
    active = world.is_active(day)
    shocks = []
    for i, offset in enumerate(offsets, start=1):
        kind = KINDS[rng.integers(len(KINDS))]
        multiplier = round(float(rng.uniform(*RANDOM_MULTIPLIER[kind])), 3)
        duration = timedelta(seconds=round(float(rng.uniform(*RANDOM_DURATION_MIN)) * 60))
        at = start + timedelta(microseconds=int(offset))
        if kind in DEMAND_KINDS:
            category = CATEGORIES[rng.integers(len(CATEGORIES))]
            shocks.append(Shock(f"random-{i:03d}", kind, at, multiplier, category=category, duration=duration))
            continue
        competitor = None if rng.random() < RANDOM_ALL_COMPETITORS else COMPETITORS[rng.integers(len(COMPETITORS))]
        sold = world.covered[:, COMPETITORS.index(competitor)] if competitor else world.covered.any(axis=1)
        pool = sold & active
        categories = np.unique(world.category[pool])
        category = categories[rng.integers(len(categories))]
        candidates = np.flatnonzero(pool & (world.category == category))
        k = min(len(candidates), int(rng.integers(RANDOM_SKUS[0], RANDOM_SKUS[1] + 1)))
        skus = world.sku_id[np.sort(rng.choice(candidates, k, replace=False))]
        shocks.append(Shock(f"random-{i:03d}", kind, at, multiplier, skus=tuple(skus), competitor=competitor,
                            duration=duration))
    return shocks


# --- as a table ----------------------------------------------------------------------------------
def shock_table(shocks: Sequence[Shock]) -> pd.DataFrame:
    """One row per shock: `SHOCK_COLUMNS`, instants in UTC, `skus` a list (empty for demand shocks)."""
    return pd.DataFrame({
        "shock_id": pd.Series([s.shock_id for s in shocks], dtype=object),
        "kind": pd.Series([s.kind for s in shocks], dtype=object),
        "start": pd.to_datetime([s.start for s in shocks], utc=True),
        "end": pd.to_datetime([s.end for s in shocks], utc=True),
        "multiplier": pd.Series([s.multiplier for s in shocks], dtype=float),
        "competitor": pd.Series([s.competitor for s in shocks], dtype=object),
        "category": pd.Series([s.category for s in shocks], dtype=object),
        "skus": pd.Series([list(s.skus) for s in shocks], dtype=object),
    }, columns=list(SHOCK_COLUMNS))


def shocks_from_table(table: pd.DataFrame) -> list[Shock]:
    """The shocks of a `shock_table` (or of a `shocks.parquet` the live market wrote)."""
    return [Shock(row.shock_id, row.kind, row.start.to_pydatetime(), float(row.multiplier),
                  skus=tuple(row.skus), competitor=row.competitor if isinstance(row.competitor, str) else None,
                  category=row.category if isinstance(row.category, str) else None,
                  duration=(row.end - row.start).to_pytimedelta())
            for row in table.itertuples(index=False)]


def read_shocks(path: Path) -> list[Shock]:
    return shocks_from_table(pd.read_parquet(path))
