"""The ground truth of a simulation, for evaluation only: the pipeline never reads it.

`load(truth_dir)` rebuilds the world from `<truth>/model.json` and answers, vectorised over arrays:
expected demand at any price, true unit cost, competitor minimum price, the oracle (profit-maximising)
price and the rate-card shipping cost. `sku_table` and `sku_day_table` are the same truth as tables.
Live runs under market shocks (`simulator.shocks`): `true_expected_profit`, `oracle_price` and
`oracle_path` at any instant, and `write_shock_truth` for `<truth>/shocks.parquet` and
`<truth>/oracle_path.parquet`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from lakehouse.reference import CARRIERS, CATEGORIES, SERVICE_LEVELS
from simulator.config import SimConfig
from simulator.shipping import billable_weight_kg, rate_card_cost
from simulator.shocks import COMPETITOR_KINDS, Shock, breakpoints, live_day, market_state, shock_table
from simulator.world import World

MODEL_FILE = "model.json"
SHOCKS_FILE = "shocks.parquet"
ORACLE_PATH_FILE = "oracle_path.parquet"
MARKET_MESSAGES_FILE = "market_messages.parquet"
HOURS_PER_DAY = 24.0
ORACLE_PATH_COLUMNS = ("sku", "time", "oracle_price", "oracle_profit", "unit_cost_usd", "competitor_min_usd",
                       "demand_multiplier")


class Truth:
    """Questions about the true model of one world. `sku` takes canonical ids (`SKU-000123`)."""

    def __init__(self, world: World):
        self.world = world

    # --- indexing --------------------------------------------------------------------------
    def sku_index(self, sku) -> np.ndarray:
        return self.world.sku_index(sku)

    def day_index(self, when) -> np.ndarray:
        days = (np.asarray(when, dtype="datetime64[D]") - np.datetime64(self.world.config.start_date, "D"))
        days = days.astype(np.int64)
        if np.any(days < 0):
            raise ValueError(f"dates before the simulation start {self.world.config.start_date}")
        return days

    def _per_day(self, fn, sku, when, *arrays) -> np.ndarray:
        """Evaluate fn(day, sku_index, *arrays) per distinct day, broadcasting all inputs."""
        idx, days, *arrays = np.broadcast_arrays(self.sku_index(sku), self.day_index(when),
                                                 *(np.asarray(a, dtype=float) for a in arrays))
        out = np.empty(idx.shape)
        for day in np.unique(days):
            m = days == day
            out[m] = fn(int(day), idx[m], *(a[m] for a in arrays))
        return out

    # --- demand and cost -----------------------------------------------------------------------
    def expected_demand(self, sku, price, competitor_price, when) -> np.ndarray:
        """Expected units sold per day at our `price` (USD) given the competitors' minimum price.

        units = views(day) * P(cart | price, competitor) * P(purchase | cart) * E[quantity];
        competitor_price NaN means no competitor sells the SKU.
        """
        w = self.world
        per_unit = w.purchase_given_cart * (1 + w.params.extra_quantity_mean)

        def fn(day, i, p, c):
            return w.expected_views(day)[i] * w.cart_probability(i, p, c) * per_unit

        return self._per_day(fn, sku, when, price, competitor_price)

    def unit_cost(self, sku, when) -> np.ndarray:
        """True unit cost in USD (supplier cost at the day's exchange rate)."""
        return self._per_day(lambda day, i: self.world.unit_cost_usd(day)[i], sku, when)

    def competitor_min_price(self, sku, when) -> np.ndarray:
        """Lowest competitor price in USD; NaN where no competitor sells the SKU."""
        return self._per_day(lambda day, i: self.world.competitor_min_usd(day)[i], sku, when)

    def our_price(self, sku, when) -> np.ndarray:
        """The USD price we actually charged in the history (list, price test, MAP floor)."""
        return self._per_day(lambda day, i: self.world.own_price(day)[i], sku, when)

    def elasticity(self, sku) -> np.ndarray:
        return self.world.elasticity[self.sku_index(sku)]

    def optimal_price(self, sku, when, competitor_price=None) -> np.ndarray:
        """Oracle price maximising expected profit (price - unit cost) * demand; MAP is not applied.

        Demand is c * p**e for p above the price p_cap where the add-to-cart cap binds and flat
        below it, so the optimum is max(cost * e / (1 + e), p_cap).
        """
        w, p = self.world, self.world.params
        if competitor_price is None:
            competitor_price = self.competitor_min_price(sku, when)
        cost = self.unit_cost(sku, when)
        i, cmin = np.broadcast_arrays(self.sku_index(sku), np.asarray(competitor_price, dtype=float))
        e, ref = w.elasticity[i], w.ref_price[i]
        cmin = np.where(np.isnan(cmin), ref, cmin)
        p_cap = (p.cart_rate_cap / (w.cart_rate0[i] * ref ** -(e + p.gamma) * cmin**p.gamma)) ** (1 / e)
        return np.maximum(cost * e / (1 + e), p_cap)

    # --- shipping --------------------------------------------------------------------------
    def billable_weight_kg(self, weight_kg, volume_cm3, carrier) -> np.ndarray:
        """max(actual kg, volume cm3 / the carrier's volumetric divisor)."""
        return billable_weight_kg(np.asarray(weight_kg, dtype=float), np.asarray(volume_cm3, dtype=float),
                                  _codes(carrier, CARRIERS))

    def rate_card_cost(self, carrier, service_level, zone, billable_kg, when, remote=False) -> np.ndarray:
        """Rate-card price in USD of shipments; the carrier invoices this times lognormal noise."""
        return rate_card_cost(self.world.rate_cards, self.day_index(when), _codes(carrier, CARRIERS),
                              _codes(service_level, SERVICE_LEVELS), np.asarray(zone, dtype=np.int64),
                              np.asarray(billable_kg, dtype=float), np.asarray(remote, dtype=bool))


def _codes(names, vocabulary: tuple[str, ...]) -> np.ndarray:
    """Integer codes of names (carriers, service levels); loops over distinct values only."""
    distinct, inverse = np.unique(np.asarray(names).astype(str), return_inverse=True)
    unknown = set(distinct) - set(vocabulary)
    if unknown:
        raise KeyError(f"unknown values {sorted(unknown)}; known: {vocabulary}")
    return np.array([vocabulary.index(v) for v in distinct], dtype=np.int64)[inverse]


def load(truth_dir: Path) -> Truth:
    """The truth of the simulation whose ground truth was written to `truth_dir`."""
    config = SimConfig.from_json(json.loads((Path(truth_dir) / MODEL_FILE).read_text())["config"])
    return Truth(World(config))


def sku_table(world: World) -> pd.DataFrame:
    """Static truth, one row per SKU: demand parameters, anchor flag, true measures, supplier."""
    return pd.DataFrame({
        "sku": world.sku_id,
        "category": np.asarray(CATEGORIES)[world.category],
        "is_anchor": world.is_anchor,
        "elasticity": world.elasticity,
        "cart_rate0": world.cart_rate0,
        "popularity": world.popularity,
        "reference_price": world.ref_price,
        "weight_kg": world.weight_g / 1000.0,
        "length_cm": world.dims_cm[:, 0],
        "width_cm": world.dims_cm[:, 1],
        "height_cm": world.dims_cm[:, 2],
        "launch_date": np.datetime64(world.config.start_date, "D") + world.launch_day,
        "supplier_id": world.supplier_id[world.supplier_of],
    })


def sku_day_table(world: World, day: int) -> pd.DataFrame:
    """Daily truth, one row per launched SKU: prices, cost, traffic and expected demand."""
    i = np.flatnonzero(world.is_active(day))
    d = world.state_day(day)
    price, cmin = world.own_price(day)[i], world.competitor_min_usd(day)[i]
    views = world.expected_views(day)[i]
    cart = world.cart_probability(i, price, cmin)
    return pd.DataFrame({
        "date": world.config.day_date(day),
        "sku": world.sku_id[i],
        "list_price_usd": world.list_price[d, i],
        "map_price_usd": world.map_price[d, i],
        "our_price_usd": price,
        "competitor_min_usd": cmin,
        "unit_cost_usd": world.unit_cost_usd(day)[i],
        "anchor_campaign": world.campaign(day)[world.category[i]],
        "expected_views": views,
        "cart_probability": cart,
        "expected_units": views * cart * world.purchase_given_cart * (1 + world.params.extra_quantity_mean),
    })


def model_description(world: World) -> dict:
    """model.json: the config (enough to rebuild the world) and the derived facts worth reading."""
    cards = world.rate_cards
    return {
        "config": world.config.to_json(),
        "category_elasticity": {name: float(np.mean(world.elasticity[world.category == c]))
                                for c, name in enumerate(CATEGORIES)},
        "anchors": world.sku_id[world.is_anchor].tolist(),
        "rate_card_effective_dates": [world.config.day_date(c.effective_day).isoformat() for c in cards],
        "purchase_given_cart": world.purchase_given_cart,
        "expected_quantity": 1 + world.params.extra_quantity_mean,
    }


# --- live runs under market shocks ---------------------------------------------------------------
def true_expected_units(world: World, sku, price, t: datetime, shocks: Sequence[Shock] = (),
                        day: int | None = None) -> np.ndarray:
    """Expected units sold per hour of each SKU at our USD `price` at instant `t`: the day's mean hourly
    demand (`Truth.expected_demand` / 24, no diurnal profile: live shoppers arrive at a steady rate)
    at the shocked competitor minimum price, times the category's traffic multiplier. Broadcasts
    `sku` (canonical ids) with `price`; the world's state of `day` (default `live_day`)."""
    day = live_day(world) if day is None else day
    state = market_state(world, shocks, t, day)
    i = world.sku_index(sku)
    per_day = Truth(world).expected_demand(sku, price, state.competitor_min_usd[i], world.config.day_date(day))
    return per_day * state.traffic[i] / HOURS_PER_DAY


def true_expected_profit(world: World, sku, price, t: datetime, shocks: Sequence[Shock] = (),
                         day: int | None = None) -> np.ndarray:
    """Expected profit per hour, USD, of each SKU at our USD `price` at instant `t`: (price - true unit
    cost) * `true_expected_units`. Broadcasts `sku` with `price`."""
    day = live_day(world) if day is None else day
    cost = world.unit_cost_usd(day)[world.sku_index(sku)]
    return (np.asarray(price, dtype=float) - cost) * true_expected_units(world, sku, price, t, shocks, day)


def oracle_price(world: World, sku, t: datetime, shocks: Sequence[Shock] = (), day: int | None = None) -> np.ndarray:
    """The price maximising `true_expected_profit` of each SKU at `t` (`Truth.optimal_price` at the shocked
    competitor minimum price; MAP and guardrails not applied). Traffic multipliers scale profit at
    every price alike, so demand shocks leave it unchanged; with a constant own-price elasticity a
    competitor shock moves it only where the add-to-cart cap binds."""
    day = live_day(world) if day is None else day
    state = market_state(world, shocks, t, day)
    return Truth(world).optimal_price(sku, world.config.day_date(day),
                                      competitor_price=state.competitor_min_usd[world.sku_index(sku)])


def oracle_path(world: World, shocks: Sequence[Shock], skus, times, day: int | None = None) -> pd.DataFrame:
    """The oracle through the shocks. Grain: one row per SKU and instant of `times` (timezone-aware),
    sorted by SKU then time: `ORACLE_PATH_COLUMNS`, profits per hour as in `true_expected_profit`."""
    day = live_day(world) if day is None else day
    skus = np.asarray(skus).astype(str)
    i = world.sku_index(skus)
    frames = []
    for t in np.atleast_1d(np.asarray(times, dtype=object)):
        state = market_state(world, shocks, t, day)
        price = oracle_price(world, skus, t, shocks, day)
        frames.append(pd.DataFrame({
            "sku": skus, "time": pd.Timestamp(t).tz_convert("UTC"), "oracle_price": price,
            "oracle_profit": true_expected_profit(world, skus, price, t, shocks, day),
            "unit_cost_usd": world.unit_cost_usd(day)[i], "competitor_min_usd": state.competitor_min_usd[i],
            "demand_multiplier": state.traffic[i]}, columns=list(ORACLE_PATH_COLUMNS)))
    if not frames:
        return pd.DataFrame(columns=list(ORACLE_PATH_COLUMNS))
    return pd.concat(frames, ignore_index=True).sort_values(["sku", "time"], kind="stable").reset_index(drop=True)


def shocked_skus(world: World, shocks: Sequence[Shock], day: int | None = None) -> np.ndarray:
    """Canonical ids of the SKUs any shock touches (a competitor shock's SKUs, a demand shock's active
    category members), sorted."""
    day = live_day(world) if day is None else day
    touched = np.zeros(world.n_skus, dtype=bool)
    for s in shocks:
        if s.kind in COMPETITOR_KINDS:
            touched[world.sku_index(s.skus)] = True
        else:
            touched |= (world.category == CATEGORIES.index(s.category)) & world.is_active(day)
    return world.sku_id[touched]


def write_shock_truth(truth_dir: Path, world: World, shocks: Sequence[Shock], start: datetime, end: datetime,
                      run_id: str, day: int | None = None) -> tuple[Path, Path]:
    """`<truth>/shocks.parquet` (one row per shock: `run_id` and `shock_table`'s columns) and
    `<truth>/oracle_path.parquet` (`run_id` and `oracle_path` of every shocked SKU at `start` and at
    each shock start and end before `end`: a step function, each row holding until the SKU's next).
    Both are replaced: they describe the latest run."""
    truth_dir = Path(truth_dir)
    truth_dir.mkdir(parents=True, exist_ok=True)
    shocks_path, path_path = truth_dir / SHOCKS_FILE, truth_dir / ORACLE_PATH_FILE
    table = shock_table(shocks)
    table.insert(0, "run_id", run_id)
    table.to_parquet(shocks_path, index=False)
    path = oracle_path(world, shocks, shocked_skus(world, shocks, day), breakpoints(shocks, start, end), day)
    path.insert(0, "run_id", run_id)
    path.to_parquet(path_path, index=False)
    return shocks_path, path_path
