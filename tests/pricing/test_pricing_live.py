"""Live repricing: reason codes by hand, the policy file's validation, and properties of the live guardrails
(the floor, the daily move bound, the change rate) over arbitrary markets and sequences of live features."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pricing.guardrails import DEFAULT_GUARDRAILS, Guardrails, Reason, decode_reasons
from pricing.live import LiveGuardState, LiveReason, live_decide, live_frame, live_signals
from pricing.policy import LIVE_POLICY, POLICY_FILE, LivePolicy, PolicyError, policy_section, read_policy

POLICY = LivePolicy(competitor_move_pct=3, demand_surge_index=1.5, demand_slump_index=0.5, max_changes_per_hour=2,
                    max_daily_move_pct=15)
NO_ENDING = Guardrails.from_dict({"price_ending": None})
T0 = datetime(2026, 10, 2, 9, 0, tzinfo=UTC)


def elastic(elasticity: float = -2.0):
    """demand_fn_of for constant-elasticity demand: the best price is cost x e / (1 + e) (2 x cost at -2)."""
    return lambda rows: (lambda prices: np.asarray(prices, dtype=float) ** elasticity)


def frame(cost=10.0, current=np.nan, competitor=np.nan, map_price=np.nan, rows: int = 1) -> pd.DataFrame:
    return pd.DataFrame({"sku": [f"SKU-{i:06d}" for i in range(rows)], "unit_cost_usd": cost,
                         "last_price_usd": current, "competitor_min_price_usd": competitor,
                         "map_price_usd": map_price, "sku_views_7d": 70.0, "category_views_7d_vs_28d": 1.0})


def test_reason_codes_competitor_first_then_demand():
    daily = [20.0, 20.0, np.nan, 20.0, 20.0, 20.0, 20.0, np.nan]
    live = [20.5, 19.0, 18.0, np.nan, np.nan, 21.0, 20.0, np.nan]
    index = [np.nan, 2.0, np.nan, 1.6, 0.4, 0.2, 1.5, 0.5]

    signals = live_signals(daily, live, index, POLICY)

    assert signals.reasons() == [None, LiveReason.COMPETITOR_MOVE, LiveReason.COMPETITOR_MOVE,
                                 LiveReason.DEMAND_SURGE, LiveReason.DEMAND_SLUMP, LiveReason.COMPETITOR_MOVE,
                                 None, None]
    assert signals.surge.tolist() == [False, True, False, True, False, False, False, False]


def test_live_frame_takes_the_live_inputs_that_moved_only():
    daily = frame(competitor=20.0, rows=3)
    signals = live_signals([20.0] * 3, [15.0, 20.1, np.nan], [1.0, 2.0, np.nan], POLICY)

    live = live_frame(daily, [15.0, 20.1, np.nan], [1.0, 2.0, np.nan], signals)

    assert live[["competitor_min_price_usd", "sku_views_7d", "category_views_7d_vs_28d"]].values.tolist() == [
        [15.0, 70.0, 1.0], [20.0, 140.0, 2.0], [20.0, 70.0, 1.0]]


def test_without_a_live_move_the_daily_price_stands():
    decision = live_decide(frame(competitor=20.0), elastic(), [20.2], [1.0], [18.99], [18.99], [18.99], [0],
                           DEFAULT_GUARDRAILS, POLICY)

    assert (decision.prices.tolist(), decision.reasons, decode_reasons(decision.reason_mask[0])) == (
        [18.99], [None], [Reason.NO_CURRENT_PRICE])


def test_a_competitor_below_our_cost_is_matched_down_to_the_floor_never_below():
    # Cost 10, floor 11; the competitor sells at 8 (band up to 9.20): the band pulls the optimum (20) down
    # as far as the floor lets it.
    decision = live_decide(frame(competitor=20.0), elastic(), [8.0], [np.nan], [19.99], [19.99], [np.nan], [0],
                           NO_ENDING, POLICY)

    assert decision.prices.tolist() == [11.0] and decision.reasons == [LiveReason.COMPETITOR_MOVE]
    assert decode_reasons(decision.reason_mask[0]) == [
        Reason.COMPETITOR_BAND_HIGH, Reason.INFEASIBLE, Reason.COMPETITOR_BAND_OVERRIDDEN, Reason.NO_CURRENT_PRICE]


def test_the_daily_move_bound_holds_a_competitor_crash_to_15_percent():
    # First price 20 today: the live price may go down to 17 (floor 11), not to the band around 12.
    decision = live_decide(frame(competitor=20.0), elastic(), [12.0], [np.nan], [19.99], [20.0], [20.0], [0],
                           NO_ENDING, POLICY)

    assert decision.prices.tolist() == [pytest.approx(17.0)]
    assert Reason.LIVE_DAILY_MOVE_LIMIT in decode_reasons(decision.reason_mask[0])


def test_the_change_limit_keeps_the_served_price_unless_it_is_below_the_floor():
    decision = live_decide(frame(cost=[10.0, 20.0], rows=2, competitor=20.0), elastic(), [12.0, 12.0],
                           [np.nan, np.nan], [19.99, 19.99], [18.0, 18.0], [np.nan, np.nan], [2, 2], NO_ENDING, POLICY)

    # Row 0 is held at 18; row 1's cost rose to 20 (floor 22): 18 is below it, so the floor wins.
    assert decision.held.tolist() == [True, False]
    assert decision.prices.tolist() == [18.0, 22.0]
    assert decode_reasons(decision.reason_mask[0]) == [Reason.LIVE_CHANGE_LIMIT]


def test_rule_based_live_prices_match_the_live_competitor():
    # Cost 20: cost-plus 27 is above the match 24.75, which the band [21.25, 28.75] and the floor 22 allow.
    decision = live_decide(frame(cost=20.0, competitor=30.0), None, [25.0], [np.nan], [29.99], [29.99], [np.nan],
                           [0], NO_ENDING, POLICY)

    assert decision.prices.tolist() == [pytest.approx(25.0 * 0.99)]
    assert decision.reasons == [LiveReason.COMPETITOR_MOVE]


def test_the_repositorys_policy_file_is_valid_and_is_what_the_guardrails_use():
    assert read_policy(POLICY_FILE).keys() == {"guardrails", "live"}
    assert policy_section(Guardrails, "guardrails") == DEFAULT_GUARDRAILS
    assert policy_section(LivePolicy, "live") == LIVE_POLICY


@pytest.mark.parametrize(("text", "message"), [
    ("guardrails: {}\n", r"sections missing \['live'\]"),
    ("guardrails: {}\nlive: {}\nextra: {}\n", r"unknown \['extra'\]"),
    ("[1, 2]", "expected the sections"),
    ("live: [1]\nguardrails: {}\n", "live: expected a mapping"),
    ("guardrails: {a: [}\n", "not valid YAML"),
])
def test_a_malformed_policy_file_is_refused_with_the_file_named(tmp_path, text, message):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=f"{path}: .*{message}"):
        policy_section(LivePolicy, "live", path)


@pytest.mark.parametrize(("change", "message"), [
    ({"max_changes_per_hour": 0}, "max_changes_per_hour must be a whole number >= 1"),
    ({"max_changes_per_hour": 2.5}, "max_changes_per_hour must be a whole number >= 1"),
    ({"max_daily_move_pct": 100}, r"max_daily_move_pct must be in \(0, 100\)"),
    ({"demand_surge_index": 0.9}, "demand indices must satisfy"),
    ({"demand_slump_index": -1}, "demand indices must satisfy"),
    ({"competitor_move_pct": "3%"}, "competitor_move_pct must be a number"),
])
def test_bad_live_settings_name_the_section_and_key(tmp_path, change, message):
    values = {**read_policy(POLICY_FILE)["live"], **change}
    path = tmp_path / "policy.yaml"
    path.write_text(f"guardrails: {read_policy(POLICY_FILE)['guardrails']}\nlive: {values}\n")
    with pytest.raises(PolicyError, match=f"{path}: live: {message}"):
        policy_section(LivePolicy, "live", path)


def test_a_missing_or_unknown_key_is_named(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("guardrails: {min_margin_pct: 10, typo: 1}\nlive: {}\n")
    with pytest.raises(PolicyError, match=r"guardrails: keys missing \['max_daily_change_pct'.*unknown \['typo'\]"):
        policy_section(Guardrails, "guardrails", path)


# --- properties ------------------------------------------------------------------------------------------

_price = st.floats(0.05, 20.0)  # as multiples of the unit cost
_maybe = st.one_of(st.just(float("nan")), _price)
_index = st.one_of(st.just(float("nan")), st.floats(0.0, 5.0))
policies = st.builds(LivePolicy, competitor_move_pct=st.floats(0, 20), demand_surge_index=st.floats(1, 3),
                     demand_slump_index=st.floats(0, 1), max_changes_per_hour=st.integers(1, 6),
                     max_daily_move_pct=st.floats(1, 50))
rails_st = st.builds(Guardrails.from_dict, st.fixed_dictionaries({
    "min_margin_pct": st.floats(0, 60), "price_ending": st.sampled_from([None, 0.99, 0.0]),
    "respect_map": st.booleans()}))


@settings(max_examples=300, deadline=None)
@given(cost=st.floats(0.5, 500.0), rows=st.lists(st.tuples(_maybe, _maybe, _maybe, _maybe, _index, _price, _maybe,
                                                            st.integers(0, 8)), min_size=1, max_size=12),
       policy=policies, rails=rails_st, elasticity=st.floats(-4.0, -1.1), model=st.booleans())
def test_never_below_the_floor_and_within_the_daily_bound_whatever_the_competitor(cost, rows, policy, rails,
                                                                                   elasticity, model):
    current, daily_comp, live_comp, map_, index, served, first, changes = (np.array(c, dtype=float) for c in
                                                                           zip(*rows, strict=True))
    features = frame(cost, current * cost, daily_comp * cost, map_ * cost, rows=len(rows))
    decision = live_decide(features, elastic(elasticity) if model else None, live_comp * cost, index,
                           served * cost, served * cost, first * cost, changes.astype(int), rails, policy)

    floor = np.maximum(cost * rails.margin_factor, np.where(rails.respect_map, np.nan_to_num(map_ * cost), 0.0))
    assert np.all(decision.prices >= floor - 1e-9)
    bounded = np.isfinite(first) & ~decision.held
    low, high = first * cost * (1 - policy.max_daily_move), first * cost * (1 + policy.max_daily_move)
    within = (decision.prices >= low - 1e-9) & (decision.prices <= high + 1e-9)
    on_floor = np.isclose(decision.prices, floor) & (high < floor)  # the floor won over the bound
    assert np.all(~bounded | within | on_floor)


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(1, 40), _maybe, _index), min_size=1, max_size=60),
       policy=policies, model=st.booleans())
def test_never_more_than_n_changes_in_any_rolling_hour_nor_beyond_the_days_bound(steps, policy, model):
    cost, daily_price = 10.0, 19.99
    features = frame(cost, competitor=20.0)
    state, served, now, history = LiveGuardState(), np.array([daily_price]), T0, []
    for minutes, live_comp, index in steps:
        now += timedelta(minutes=minutes)
        first, changes = state.inputs(["SKU-000000"], served, now)
        decision = live_decide(features, elastic() if model else None, [live_comp * cost], [index], [daily_price],
                               served, first, changes, DEFAULT_GUARDRAILS, policy)
        state.record(["SKU-000000"], served, decision.prices, now)
        if round(decision.prices[0], 2) != round(served[0], 2):
            history.append(now)
        assert abs(decision.prices[0] / first[0] - 1) <= policy.max_daily_move + 1e-9 or decision.held[0]
        served = decision.prices
    for start in history:
        assert sum(start <= t < start + timedelta(hours=1) for t in history) <= policy.max_changes_per_hour


def test_the_change_history_keeps_the_last_hour_only():
    state = LiveGuardState()
    for minute in (0, 20, 50, 70):
        now = T0 + timedelta(minutes=minute)
        state.inputs(["SKU-000001"], np.array([10.0 + minute]), now)
        state.record(["SKU-000001"], np.array([10.0 + minute]), np.array([11.0 + minute]), now)
    state.inputs(["SKU-000001"], np.array([81.0]), T0 + timedelta(minutes=80))

    assert state.changes("SKU-000001") == [T0 + timedelta(minutes=m) for m in (50, 70)]


def test_a_new_utc_day_takes_the_price_served_then_as_its_first_price():
    state = LiveGuardState()
    first, _ = state.inputs(["SKU-000001"], np.array([20.0]), T0)
    state.inputs(["SKU-000001"], np.array([22.0]), T0 + timedelta(hours=2))
    next_day, _ = state.inputs(["SKU-000001"], np.array([23.0]), T0 + timedelta(hours=15))

    assert (first.tolist(), next_day.tolist()) == ([20.0], [23.0])

