"""Market shocks and the oracle through them: exact multipliers in exact windows, reproducible random
shocks at their rate, and an oracle that is the true profit's argmax."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from lakehouse.reference import CATEGORIES
from simulator.config import COMPETITORS, SimConfig
from simulator.shocks import (
    DEMAND_KINDS,
    KINDS,
    RANDOM_MULTIPLIER,
    Shock,
    breakpoints,
    live_day,
    market_state,
    multipliers_at,
    random_shocks,
    read_shocks,
    scripted_shocks,
    shock_table,
    top_skus,
)
from simulator.truth import (
    ORACLE_PATH_COLUMNS,
    Truth,
    oracle_path,
    oracle_price,
    true_expected_profit,
    write_shock_truth,
)
from simulator.world import World

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
US = timedelta(microseconds=1)
MEGAMART = COMPETITORS.index("megamart")


@pytest.fixture(scope="module")
def world() -> World:
    # Seed 5 has SKUs whose add-to-cart cap binds at the oracle price: there competitor prices move it.
    return World(SimConfig(seed=5, skus=100, days=5))


def _cut(world: World, skus: list[str], multiplier: float = 0.8) -> Shock:
    return scripted_shocks(world, START, [{"kind": "competitor_cut", "at_s": 600, "competitor": "megamart",
                                           "skus": skus, "multiplier": multiplier}])[0]


def test_a_scripted_cut_moves_exactly_its_skus_quotes_between_its_start_and_end(world):
    skus = top_skus(world, "electronics", 3, "megamart")
    shock = _cut(world, skus)
    assert (shock.shock_id, shock.kind, shock.skus, shock.competitor, shock.multiplier) == \
        ("scripted-001", "competitor_cut", tuple(skus), "megamart", 0.8)
    assert (shock.start, shock.end) == (START + timedelta(minutes=10), START + timedelta(minutes=70))
    base = world.competitor_quote[world.state_day(live_day(world))]
    hit = np.zeros(base.shape, dtype=bool)
    hit[world.sku_index(skus), MEGAMART] = True
    shocked = np.where(hit, np.round(base * 0.8, 2), base)
    for t, inside in ((shock.start - US, False), (shock.start, True), (shock.start + timedelta(minutes=30), True),
                      (shock.end - US, True), (shock.end, False), (shock.end + timedelta(hours=5), False)):
        state = market_state(world, [shock], t)
        np.testing.assert_array_equal(multipliers_at(world, [shock], t).competitor, np.where(hit & inside, 0.8, 1.0))
        np.testing.assert_array_equal(state.quote, shocked if inside else base)
        np.testing.assert_array_equal(state.competitor_min_usd,
                                      world.competitor_min_usd(live_day(world), shocked if inside else None))
        np.testing.assert_array_equal(state.traffic, np.ones(world.n_skus))
    # the SKUs' megamart quotes are 20% lower to the cent, and no other quote moved
    moved = ~np.isclose(shocked, base, equal_nan=True)
    assert np.array_equal(moved, hit)
    np.testing.assert_allclose(shocked[hit] / base[hit], 0.8, atol=0.005 / base[hit].min())


def test_demand_shocks_multiply_their_category_traffic_and_overlaps_multiply(world):
    surge, slump = scripted_shocks(world, START, [
        {"kind": "demand_surge", "at_s": 0, "category": "toys", "multiplier": 2.0},
        {"kind": "demand_slump", "at_s": 1800, "category": "toys", "multiplier": 0.5, "minutes": 90},
    ])
    toys = CATEGORIES.index("toys")
    expected = {START - US: 1.0, START: 2.0, START + timedelta(minutes=30): 1.0, START + timedelta(minutes=60): 0.5,
                START + timedelta(minutes=120) - US: 0.5, START + timedelta(minutes=120): 1.0}
    for t, factor in expected.items():
        demand = multipliers_at(world, [surge, slump], t).demand
        np.testing.assert_array_equal(demand, np.where(np.arange(len(CATEGORIES)) == toys, factor, 1.0))
        state = market_state(world, [surge, slump], t)
        np.testing.assert_array_equal(state.traffic, np.where(world.category == toys, factor, 1.0))
        np.testing.assert_array_equal(state.quote, world.competitor_quote[world.state_day(live_day(world))])
    assert breakpoints([surge, slump], START, START + timedelta(hours=3)) == [
        START, START + timedelta(minutes=30), START + timedelta(minutes=60), START + timedelta(minutes=120)]


def test_random_shocks_are_reproducible_by_seed_and_arrive_at_their_rate(world):
    hours, rate = 400, 3.0
    shocks = random_shocks(world, START, START + timedelta(hours=hours), rate, seed=1)
    assert shocks == random_shocks(world, START, START + timedelta(hours=hours), rate, seed=1)
    assert shocks != random_shocks(world, START, START + timedelta(hours=hours), rate, seed=2)
    expected = rate * hours
    assert abs(len(shocks) - expected) < 4 * np.sqrt(expected)
    assert [s.shock_id for s in shocks] == [f"random-{i:03d}" for i in range(1, len(shocks) + 1)]
    starts = [s.start for s in shocks]
    assert starts == sorted(starts) and starts[0] >= START and starts[-1] < START + timedelta(hours=hours)
    # gaps between starts are exponential with mean 1 / rate
    gaps = np.diff([(s - START).total_seconds() / 3600 for s in starts])
    assert abs(gaps.mean() - 1 / rate) < 4 / rate / np.sqrt(len(gaps))
    kinds = pd.Series([s.kind for s in shocks]).value_counts(normalize=True)
    assert set(kinds.index) == set(KINDS) and np.all(np.abs(kinds - 0.25) < 4 * np.sqrt(0.25 * 0.75 / len(shocks)))
    day = live_day(world)
    for s in shocks:
        assert timedelta(minutes=45) <= s.duration <= timedelta(minutes=75)
        lo, hi = RANDOM_MULTIPLIER[s.kind]
        assert lo <= s.multiplier <= hi
        if s.kind in DEMAND_KINDS:
            assert s.category in CATEGORIES and s.skus == ()
            continue
        i = world.sku_index(s.skus)
        sells = world.covered if s.competitor is None else world.covered[:, [COMPETITORS.index(s.competitor)]]
        seller = sells.any(axis=1)
        candidates = seller & world.is_active(day) & (world.category == world.category[i[0]])
        assert candidates[i].all() and len(set(s.skus)) == len(s.skus)
        assert min(3, candidates.sum()) <= len(i) <= 10  # fewer than 3 only where the category has fewer


def test_shocks_round_trip_through_their_table(world, tmp_path):
    shocks = random_shocks(world, START, START + timedelta(hours=20), 1.0, seed=4) + scripted_shocks(world, START)
    assert {s.kind for s in shocks} == set(KINDS) and any(s.competitor is None for s in shocks if s.skus)
    shock_table(shocks).to_parquet(tmp_path / "shocks.parquet", index=False)
    assert read_shocks(tmp_path / "shocks.parquet") == shocks
    table = shock_table(shocks)
    assert list(table.columns) == ["shock_id", "kind", "start", "end", "multiplier", "competitor", "category", "skus"]
    assert table["end"].tolist() == [pd.Timestamp(s.end) for s in shocks]


@pytest.mark.parametrize(("shock", "message"), [
    (dict(kind="competitor_cut", multiplier=1.2, skus=("SKU-1",)), r"competitor_cut needs a multiplier in \(0, 1\)"),
    (dict(kind="demand_surge", multiplier=0.9, category="toys"), "demand_surge needs a multiplier above 1"),
    (dict(kind="price_war", multiplier=0.9), "unknown shock kind 'price_war'"),
    (dict(kind="competitor_raise", multiplier=1.1, skus=()), "names SKUs and no category"),
    (dict(kind="competitor_raise", multiplier=1.1, skus=("SKU-1",), competitor="acme"), "unknown competitor 'acme'"),
    (dict(kind="demand_slump", multiplier=0.5, category="toys", skus=("SKU-1",)), "demand shock names one category"),
    (dict(kind="demand_slump", multiplier=0.5, category="toys", duration=timedelta(0)), "duration must be positive"),
    (dict(kind="demand_slump", multiplier=0.5, category="toys", start=datetime(2026, 3, 2)), "timezone-aware"),
])
def test_a_malformed_shock_is_refused_with_the_reason(shock, message):
    with pytest.raises(ValueError, match=message):
        Shock("s", **{"start": START, **shock})


def test_a_script_with_an_unknown_key_or_sku_is_refused(world):
    with pytest.raises(ValueError, match=r"unknown keys \['magnitude'\]"):
        scripted_shocks(world, START, [{"kind": "demand_surge", "at_s": 0, "category": "toys", "magnitude": 2}])
    cut = _cut(world, ["SKU-999999"])
    with pytest.raises(KeyError, match="SKU-999999"):
        market_state(world, [cut], cut.start)


# --- the oracle ----------------------------------------------------------------------------------
def _grid(world: World, skus: np.ndarray, points: int = 20_001) -> np.ndarray:
    """Prices per SKU (rows) from its unit cost to 10 times it, geometric: every elasticity is at most
    -1.15, so no markup exceeds -1.15 / -0.15 = 7.7."""
    lo = world.unit_cost_usd(live_day(world))[world.sku_index(skus)]
    return lo[:, None] * 10 ** np.linspace(0, 1, points)[None, :]


def test_the_oracle_price_is_the_argmax_of_true_profit_on_a_fine_grid(world):
    skus = world.sku_id[world.is_active(live_day(world))]
    cut = _cut(world, top_skus(world, "grocery", 5, "megamart"))
    surge = scripted_shocks(world, START, [{"kind": "demand_surge", "at_s": 600, "category": "books", "multiplier": 3}])
    for t in (START, cut.start + timedelta(minutes=5)):
        best = oracle_price(world, skus, t, [cut, *surge])
        grid = _grid(world, skus)
        profit = true_expected_profit(world, skus[:, None], grid, t, [cut, *surge])
        at_best = true_expected_profit(world, skus, best, t, [cut, *surge])
        assert np.all(at_best >= profit.max(axis=1) * (1 - 1e-12))
        argmax = grid[np.arange(len(skus)), profit.argmax(axis=1)]
        step = (grid[:, 1] / grid[:, 0])
        assert np.all(np.abs(np.log(argmax / best)) <= 2 * np.log(step))


def test_a_competitor_cut_lowers_the_oracle_price_only_where_the_cart_cap_binds(world):
    """Demand is a * p**e * cmin**gamma below the add-to-cart cap: the markup e / (1 + e) ignores the
    competitor, so the oracle moves only where the cap binds (its price rises with cmin)."""
    day = live_day(world)
    megamart = world.sku_id[world.covered[:, MEGAMART] & world.is_active(day)]
    cost, e = world.unit_cost_usd(day)[world.sku_index(megamart)], world.elasticity[world.sku_index(megamart)]
    cut = _cut(world, megamart.tolist())
    before, after = oracle_price(world, megamart, START, [cut]), oracle_price(world, megamart, cut.start, [cut])
    capped = before > cost * e / (1 + e) * (1 + 1e-9)
    cmin_before = market_state(world, [cut], START).competitor_min_usd[world.sku_index(megamart)]
    cmin_after = market_state(world, [cut], cut.start).competitor_min_usd[world.sku_index(megamart)]
    cheaper = cmin_after < cmin_before
    assert capped.sum() >= 2 and (capped & cheaper).sum() >= 2
    np.testing.assert_array_equal(after[~capped], before[~capped])
    assert np.all(after[capped & cheaper] < before[capped & cheaper])
    # on the cap, P(cart) = cap at the oracle: p ** e is proportional to cmin ** -gamma
    gamma = world.params.gamma
    expected = np.maximum(cost * e / (1 + e), before * (cmin_after / cmin_before) ** (-gamma / e))
    np.testing.assert_allclose(after[capped], expected[capped], rtol=1e-12)
    grid = _grid(world, megamart[capped])
    argmax = grid[np.arange(capped.sum()),
                  true_expected_profit(world, megamart[capped][:, None], grid, cut.start, [cut]).argmax(axis=1)]
    np.testing.assert_allclose(argmax, after[capped], rtol=2e-3)


def test_a_demand_surge_scales_true_profit_and_leaves_the_oracle_price(world):
    toys = world.sku_id[(world.category == CATEGORIES.index("toys")) & world.is_active(live_day(world))]
    surge = scripted_shocks(world, START, [{"kind": "demand_surge", "at_s": 0, "category": "toys",
                                            "multiplier": 2.5}])
    during = START + timedelta(minutes=1)
    price = world.ref_price[world.sku_index(toys)] * 0.95
    np.testing.assert_allclose(true_expected_profit(world, toys, price, during, surge),
                               2.5 * true_expected_profit(world, toys, price, during), rtol=1e-12)
    np.testing.assert_array_equal(oracle_price(world, toys, during, surge), oracle_price(world, toys, during))


def test_true_profit_without_shocks_is_the_daily_truth_per_hour(world):
    day = live_day(world)
    truth, when = Truth(world), world.config.day_date(day)
    skus = world.sku_id[world.is_active(day)]
    price = world.own_price(day)[world.sku_index(skus)]
    daily = (price - truth.unit_cost(skus, when)) * truth.expected_demand(
        skus, price, truth.competitor_min_price(skus, when), when)
    np.testing.assert_allclose(true_expected_profit(world, skus, price, START), daily / 24, rtol=1e-12)
    np.testing.assert_array_equal(oracle_price(world, skus, START), truth.optimal_price(skus, when))


def test_the_oracle_path_gives_price_and_profit_per_sku_and_instant(world, tmp_path):
    skus = top_skus(world, "kitchen", 4)
    shocks = scripted_shocks(world, START, [
        {"kind": "competitor_raise", "at_s": 60, "skus": skus[:2], "multiplier": 1.2, "minutes": 30},
        {"kind": "demand_slump", "at_s": 120, "category": "kitchen", "multiplier": 0.4, "minutes": 10}])
    times = [START, START + timedelta(minutes=2, seconds=30), START + timedelta(minutes=20), START + timedelta(hours=2)]
    path = oracle_path(world, shocks, skus, times)
    assert list(path.columns) == list(ORACLE_PATH_COLUMNS)
    assert list(zip(path["sku"], path["time"], strict=True)) == \
        [(s, pd.Timestamp(t)) for s in sorted(skus) for t in times]
    for t in times:
        rows = path[path["time"] == pd.Timestamp(t)]
        state = market_state(world, shocks, t)
        np.testing.assert_array_equal(rows["oracle_price"], oracle_price(world, rows["sku"], t, shocks))
        profit = true_expected_profit(world, rows["sku"], rows["oracle_price"], t, shocks)
        np.testing.assert_allclose(rows["oracle_profit"], profit, rtol=1e-12)
        i = world.sku_index(rows["sku"])
        np.testing.assert_array_equal(rows["competitor_min_usd"], state.competitor_min_usd[i])
        np.testing.assert_array_equal(rows["demand_multiplier"], state.traffic[i])
    slumped = path["time"] == pd.Timestamp(times[1])
    assert path.loc[slumped, "demand_multiplier"].eq(0.4).all() and path.loc[~slumped, "demand_multiplier"].eq(1).all()

    shocks_file, path_file = write_shock_truth(tmp_path, world, shocks, START, START + timedelta(hours=1), "run-1")
    written = pd.read_parquet(shocks_file)
    assert written["run_id"].eq("run-1").all() and written["shock_id"].tolist() == ["scripted-001", "scripted-002"]
    steps = pd.read_parquet(path_file)
    kitchen = world.sku_id[(world.category == CATEGORIES.index("kitchen")) & world.is_active(live_day(world))]
    instants = breakpoints(shocks, START, START + timedelta(hours=1))
    assert len(instants) == 5 and sorted(set(steps["sku"])) == sorted(kitchen)
    expected = oracle_path(world, shocks, sorted(kitchen), instants)
    pd.testing.assert_frame_equal(steps.drop(columns="run_id"), expected, check_dtype=False)
