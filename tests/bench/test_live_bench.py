"""The live repricing bench's arithmetic: the shocks it scripts, reaction times from answers and produce
times, profits along a price path, and the records' targets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from bench.live import (
    CUT,
    RAISE,
    SHOCK_EVERY_S,
    WARMUP_S,
    Answer,
    _per_hour,
    bench_shocks,
    reactions,
    records,
    shock_profits,
    shocked_skus,
)
from simulator.config import SimConfig
from simulator.shocks import live_day
from simulator.truth import oracle_price
from simulator.world import World

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def world() -> World:
    return World(SimConfig(seed=5, skus=100, days=5))


def test_each_shock_hits_one_sku_by_every_competitor_cuts_and_raises_in_turn(world):
    skus = shocked_skus(world, [{"sku": s} for s in world.sku_id], 6)
    shocks = bench_shocks(world, skus, START)
    assert [(s.kind, s.multiplier, s.skus, s.competitor) for s in shocks] == [
        ("competitor_cut" if n % 2 == 0 else "competitor_raise", CUT if n % 2 == 0 else RAISE, (sku,), None)
        for n, sku in enumerate(skus)]
    assert [(s.start - START).total_seconds() for s in shocks] == [WARMUP_S + n * SHOCK_EVERY_S for n in range(6)]
    assert all(s.duration == timedelta(hours=1) for s in shocks)


def test_shocked_skus_are_priced_and_sold_by_a_competitor(world):
    day = live_day(world)
    sold = world.covered.any(axis=1) & world.is_active(day)
    pool = [{"sku": s} for s in world.sku_id[:40]]
    skus = shocked_skus(world, pool, 5)
    assert skus == sorted(s for s in world.sku_id[:40] if sold[world.sku_index([s])[0]])[:5]
    with pytest.raises(RuntimeError, match="need 41"):
        shocked_skus(world, pool, 41)


def _answers(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame([Answer(sku, START + timedelta(seconds=at), price, reason,
                                None if as_of is None else START + timedelta(seconds=as_of))
                         for sku, at, price, reason, as_of in rows])


def test_the_reaction_ends_at_the_first_answer_decided_on_features_as_of_the_shock(world):
    first, second = bench_shocks(world, shocked_skus(world, [{"sku": s} for s in world.sku_id], 2), START)
    at_1, at_2 = ((s.start - START).total_seconds() for s in (first, second))
    answers = _answers([
        (first.skus[0], at_1 + 1, 10.0, None, at_1 - 30),          # features older than the shock
        (first.skus[0], at_1 + 7.5, 9.0, "COMPETITOR_MOVE", at_1),  # the reaction
        (first.skus[0], at_1 + 9.5, 9.0, "COMPETITOR_MOVE", at_1 + 1),
        (second.skus[0], at_2 + 3, 20.0, None, None),              # never reacted to
    ])
    messages = pd.DataFrame({
        "shock_id": [first.shock_id, first.shock_id, first.shock_id, None],
        "reason": ["shock_start", "shock_start", "shock_end", "routine"],
        "produced_at": [START + timedelta(seconds=s) for s in (at_1 + 0.5, at_1 + 0.6, at_1 + 3600, at_1)]})
    result = reactions([first, second], answers, messages)
    expected = pd.DataFrame({
        "shock_id": [first.shock_id, second.shock_id], "sku": [first.skus[0], second.skus[0]],
        "kind": ["competitor_cut", "competitor_raise"],
        "produced_at": [pd.Timestamp(START + timedelta(seconds=at_1 + 0.5)), pd.NaT],
        "answered_at": [pd.Timestamp(START + timedelta(seconds=at_1 + 7.5)), pd.NaT],
        "reaction_s": [7.0, np.nan], "price_usd": [9.0, np.nan], "reason_code": ["COMPETITOR_MOVE", None]})
    pd.testing.assert_frame_equal(result, expected, check_dtype=False)


def test_profits_integrate_the_live_price_path_over_the_whole_shock(world):
    [shock] = bench_shocks(world, shocked_skus(world, [{"sku": s} for s in world.sku_id], 1), START)
    sku, at_s = shock.skus[0], (shock.start - START).total_seconds()
    inside = shock.start + timedelta(seconds=1)
    daily = float(oracle_price(world, [sku], inside, [shock])[0]) * 1.2
    answers = _answers([(sku, at_s - 5, 1.0, None, None),  # before the shock: not on its path
                        (sku, at_s + 2, daily, None, None),
                        (sku, at_s + 20, daily * 0.9, "COMPETITOR_MOVE", at_s)])
    [row] = shock_profits(world, [shock], answers, {sku: daily}).to_dict(orient="records")
    at_daily, at_live = _per_hour(world, sku, [daily, daily * 0.9], inside, [shock])
    assert row["live_profit"] == pytest.approx(at_daily * 20 / 3600 + at_live * (3600 - 20) / 3600)
    assert row["daily_profit"] == pytest.approx(at_daily)
    assert row["oracle_profit"] >= max(row["daily_profit"], row["live_profit"], row["oracle_unreacted_profit"])
    assert (row["shock_id"], row["kind"], row["last_live_price"]) == (shock.shock_id, "competitor_cut", daily * 0.9)


def test_records_carry_the_targets_of_the_issue():
    profits = pd.DataFrame({"live_profit": [104.0, 2.0], "daily_profit": [98.0, 2.0], "oracle_profit": [105.0, 3.0]})
    reaction = {"p50_s": 20.0, "p95_s": 29.0, "max_s": 31.0, "n": 60, "shocks": 60}
    landing = {"p50_s": 5.0, "p95_s": 8.0}
    p95, p50, by_daily, by_oracle = records(reaction, landing, profits, {})
    assert [(r.name, r.value, r.reference_value, r.meets_target) for r in (p95, p50, by_daily, by_oracle)] == [
        ("live_reaction_p95", 29.0, 8.0, True), ("live_reaction_p50", 20.0, 5.0, True),
        ("live_profit_vs_daily", 106.0, 100.0, True), ("live_profit_vs_oracle", 106.0, 108.0, True)]
    missed = records({**reaction, "n": 59}, landing, profits.assign(live_profit=[101.0, 2.0]), {})
    assert [r.meets_target for r in missed] == [False, True, False, True]
