"""Guardrails: hand-computed decisions for each rule and conflict, config loading, and properties over
arbitrary markets (hypothesis)."""

import json

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from pricing_helpers import NAN, assert_guardrail_clean, guardrails, markets

from pricing.guardrails import (
    DEFAULT_GUARDRAILS,
    Guardrails,
    Reason,
    apply_guardrails,
    decode_reasons,
    feasible_interval,
    reason_bits,
)

R = Reason

# (candidate, unit cost, current, competitor min, MAP) -> (price, reasons), default guardrails:
# floor cost * 1.10, window current * [0.9, 1.1], band competitor * [0.85, 1.15], .99 endings.
CASES = {
    "inside every rule: only the ending moves it": ((25, 10, 24, 26, NAN), (24.99, [R.PRICE_ENDING])),
    "already ends in .99": ((24.99, 10, 24, 26, NAN), (24.99, [])),
    "margin floor 11, then 11.99 (10.99 is below the floor)": (
        (5, 10, NAN, NAN, NAN), (11.99, [R.MARGIN_FLOOR, R.PRICE_ENDING, R.NO_CURRENT_PRICE, R.NO_COMPETITOR])),
    "MAP 40 above the margin floor": (
        (30, 10, NAN, NAN, 40), (40.99, [R.MAP_FLOOR, R.PRICE_ENDING, R.NO_CURRENT_PRICE, R.NO_COMPETITOR])),
    "MAP below the margin floor: the margin floor binds": (
        (5, 10, NAN, NAN, 10.5), (11.99, [R.MARGIN_FLOOR, R.PRICE_ENDING, R.NO_CURRENT_PRICE, R.NO_COMPETITOR])),
    "raise capped at +10% (22), 21.99": (
        (30, 10, 20, NAN, NAN), (21.99, [R.DAILY_CHANGE_LIMIT, R.PRICE_ENDING, R.NO_COMPETITOR])),
    "cut capped at -10% (18), 18.99 (17.99 is outside)": (
        (10, 5, 20, NAN, NAN), (18.99, [R.DAILY_CHANGE_LIMIT, R.PRICE_ENDING, R.NO_COMPETITOR])),
    "band high 34.5, 33.99": (
        (50, 10, NAN, 30, NAN), (33.99, [R.COMPETITOR_BAND_HIGH, R.PRICE_ENDING, R.NO_CURRENT_PRICE])),
    "band low 25.5, 25.99": (
        (20, 10, NAN, 30, NAN), (25.99, [R.COMPETITOR_BAND_LOW, R.PRICE_ENDING, R.NO_CURRENT_PRICE])),
}
# Conflicts pin the price to a bound that is not a whole cent: no ending fits.
CONFLICTS = {
    "floor 22 above the window [9, 11]: the floor wins, the window pulls down to it": (
        (30, 20, 10, NAN, NAN), (22, [R.DAILY_CHANGE_LIMIT, R.INFEASIBLE, R.DAILY_CHANGE_OVERRIDDEN,
                                      R.PRICE_ENDING_UNAVAILABLE, R.NO_COMPETITOR])),
    "floor 22 above the window, candidate below the floor": (
        (5, 20, 10, NAN, NAN), (22, [R.MARGIN_FLOOR, R.INFEASIBLE, R.DAILY_CHANGE_OVERRIDDEN,
                                     R.PRICE_ENDING_UNAVAILABLE, R.NO_COMPETITOR])),
    "band [8.5, 11.5] below the floor 22: the floor wins": (
        (30, 20, NAN, 10, NAN), (22, [R.COMPETITOR_BAND_HIGH, R.INFEASIBLE, R.COMPETITOR_BAND_OVERRIDDEN,
                                      R.PRICE_ENDING_UNAVAILABLE, R.NO_CURRENT_PRICE])),
    "band [17, 23] above the window [9, 11]: the window wins, the band pulls up to 11": (
        (10, 5, 10, 20, NAN), (11, [R.COMPETITOR_BAND_LOW, R.INFEASIBLE, R.COMPETITOR_BAND_OVERRIDDEN,
                                    R.PRICE_ENDING_UNAVAILABLE])),
    "band above the window, candidate above the window": (
        (15, 5, 10, 20, NAN), (11, [R.DAILY_CHANGE_LIMIT, R.INFEASIBLE, R.COMPETITOR_BAND_OVERRIDDEN,
                                    R.PRICE_ENDING_UNAVAILABLE])),
}


@pytest.mark.parametrize(("inputs", "expected"), CASES.values(), ids=CASES.keys())
def test_each_rule_on_hand_computed_prices(inputs, expected):
    decision = apply_guardrails(*inputs)
    assert (decision.prices.tolist(), decision.reasons()) == ([expected[0]], [expected[1]])


@pytest.mark.parametrize(("inputs", "expected"), CONFLICTS.values(), ids=CONFLICTS.keys())
def test_conflicts_follow_the_priority_floor_then_change_then_band(inputs, expected):
    decision = apply_guardrails(*inputs)
    assert decision.prices == pytest.approx([expected[0]], rel=1e-12)
    assert decision.reasons() == [expected[1]]


def test_map_is_ignored_unless_respected_and_endings_can_be_disabled():
    without_map = Guardrails.from_dict({"respect_map": False})
    assert apply_guardrails(30, 10, map_price=40, rails=without_map).prices.tolist() == [29.99]
    plain = apply_guardrails(5, 10, rails=Guardrails.from_dict({"price_ending": None}))
    assert plain.prices == pytest.approx([11.0], rel=1e-12)
    assert plain.reasons() == [[R.MARGIN_FLOOR, R.NO_CURRENT_PRICE, R.NO_COMPETITOR]]


def test_an_ending_halfway_between_two_rounds_up():
    decision = apply_guardrails(12.5, 1, rails=Guardrails.from_dict({"price_ending": 0.0}))
    assert decision.prices.tolist() == [13.0]


def test_feasible_interval_states_bounds_and_the_rule_behind_each():
    interval = feasible_interval([10, 10], [20, NAN], [22, NAN], [NAN, 12])
    assert interval.low.tolist() == pytest.approx([18.7, 12.0], rel=1e-12)  # band low above the window low 18
    assert interval.high.tolist() == pytest.approx([22.0, np.inf], rel=1e-12)
    assert [decode_reasons(b) for b in interval.low_reason] == [[R.COMPETITOR_BAND_LOW], [R.MAP_FLOOR]]
    assert [decode_reasons(b) for b in interval.high_reason] == [[R.DAILY_CHANGE_LIMIT], []]
    assert [decode_reasons(b) for b in interval.notes] == [[], [R.NO_CURRENT_PRICE, R.NO_COMPETITOR]]


def test_inputs_broadcast_to_one_row_per_sku():
    decision = apply_guardrails([5.0, 30.0], 10.0)
    assert decision.prices.tolist() == [11.99, 29.99]
    assert apply_guardrails(30.0, [10.0, 20.0]).prices.tolist() == [29.99, 29.99]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"candidate": [10, -1], "unit_cost": 5}, r"candidate must be positive and finite: 1 bad row\(s\), first at \[1\]"),
    ({"candidate": 10, "unit_cost": NAN}, "unit_cost must be positive and finite"),
    ({"candidate": 10, "unit_cost": 5, "current_price": np.inf}, "current_price must be positive and finite, or NaN"),
    ({"candidate": 10, "unit_cost": 5, "map_price": 0}, "map_price must be"),
    ({"candidate": [1, 2, 3], "unit_cost": [1, 2]}, "one row per SKU"),
    ({"candidate": [[1, 2]], "unit_cost": 1}, "scalars or 1-D arrays"),
])
def test_bad_inputs_are_refused_with_the_rows_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        apply_guardrails(**kwargs)


def test_decision_as_frame_and_json_records():
    decision = apply_guardrails([5, 25], 10, [NAN, 24], [NAN, 26])
    frame = decision.to_frame()
    assert frame.to_dict("list") == {
        "price": [11.99, 24.99],
        "candidate": [5.0, 25.0],
        "reasons": [["MARGIN_FLOOR", "PRICE_ENDING", "NO_CURRENT_PRICE", "NO_COMPETITOR"], ["PRICE_ENDING"]],
        "strategy": ["guardrails", "guardrails"],
    }
    records = decision.to_records()
    assert json.loads(json.dumps(records)) == records == frame.to_dict("records")


def test_reason_bits_round_trip():
    assert decode_reasons(reason_bits(["PRICE_ENDING", R.MARGIN_FLOOR])) == [R.MARGIN_FLOOR, R.PRICE_ENDING]
    assert len({r.bit for r in Reason}) == len(Reason)


def test_guardrails_load_from_a_yaml_section_and_round_trip():
    config = yaml.safe_load("""
    guardrails:
      min_margin_pct: 15
      competitor_band: [0.9, 1.1]
      price_ending: null
    """)
    rails = Guardrails.from_dict(config["guardrails"])
    assert rails == Guardrails(min_margin_pct=15.0, max_daily_change_pct=10.0, competitor_band=(0.9, 1.1),
                               respect_map=True, price_ending=None)
    assert Guardrails.from_dict(rails.to_dict()) == rails
    assert Guardrails.from_dict(None) == DEFAULT_GUARDRAILS


@pytest.mark.parametrize(("section", "message"), [
    ({"min_margin": 10}, r"unknown guardrail settings \['min_margin'\]"),
    ({"competitor_band": [1.2, 0.8]}, "competitor_band must be two ratios"),
    ({"competitor_band": [0.8]}, "competitor_band must be two ratios"),
    ({"max_daily_change_pct": 0}, r"max_daily_change_pct must be in \(0, 100\)"),
    ({"min_margin_pct": -5}, "min_margin_pct must be >= 0"),
    ({"price_ending": 0.995}, "price_ending must be whole cents"),
    ({"respect_map": "no"}, "respect_map must be true or false"),
])
def test_bad_guardrail_settings_are_refused(section, message):
    with pytest.raises(ValueError, match=message):
        Guardrails.from_dict(section)


@settings(max_examples=300, deadline=None)
@given(market=markets(), rails=guardrails)
def test_guardrails_hold_for_any_market(market, rails):
    decision = apply_guardrails(market.candidate, market.unit_cost, market.current_price, market.competitor_price,
                                market.map_price, rails)
    assert_guardrail_clean(decision, market, rails)
    assert decision.candidates.tolist() == market.candidate.tolist()
