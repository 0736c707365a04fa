"""The rule-based strategy (cost-plus 35%, matched 1% under a cheaper competitor, then the guardrails) on
hand-computed prices, and the guardrail properties (hypothesis)."""

import pytest
from hypothesis import given, settings
from pricing_helpers import NAN, assert_guardrail_clean, guardrails, markets

from pricing.guardrails import Reason
from pricing.rules import rule_based

R = Reason


def test_works_with_only_the_unit_cost():
    # 10 * 1.35 = 13.5: 13.99 is nearer than 12.99.
    decision = rule_based(10)
    assert (decision.prices.tolist(), decision.candidates.tolist()) == ([13.99], [13.5])
    assert decision.reasons() == [[R.PRICE_ENDING, R.NO_CURRENT_PRICE, R.NO_COMPETITOR]]
    assert decision.strategy == "rule_based"


@pytest.mark.parametrize(("competitor", "candidate", "price", "reasons"), [
    # Cheaper competitor 12: match 11.88, above the floor 11, 11.99 inside the band [10.2, 13.8].
    (12, 11.88, 11.99, [R.PRICE_ENDING, R.NO_CURRENT_PRICE]),
    # Dearer competitor 20: cost-plus 13.5 is below the band [17, 23]: raised to 17, 17.99.
    (20, 13.5, 17.99, [R.COMPETITOR_BAND_LOW, R.PRICE_ENDING, R.NO_CURRENT_PRICE]),
    # Competitor 5: match 4.95 below the floor 11, and the band [4.25, 5.75] is too: the floor wins.
    (5, 4.95, 11.0, [R.MARGIN_FLOOR, R.INFEASIBLE, R.COMPETITOR_BAND_OVERRIDDEN, R.PRICE_ENDING_UNAVAILABLE,
                     R.NO_CURRENT_PRICE]),
])
def test_matches_a_cheaper_competitor_never_below_the_floor(competitor, candidate, price, reasons):
    decision = rule_based(10, competitor_price=competitor)
    assert decision.candidates == pytest.approx([candidate], rel=1e-12)
    assert decision.prices == pytest.approx([price], rel=1e-12)
    assert decision.reasons() == [reasons]


def test_current_price_and_map_are_respected():
    # Cost-plus 13.5, current 20: the window [18, 22] raises it to 18, 18.99. MAP 25 raises it to 25.99.
    decision = rule_based([10, 10], current_price=[20, NAN], map_price=[NAN, 25])
    assert decision.prices.tolist() == [18.99, 25.99]
    assert decision.reasons() == [[R.DAILY_CHANGE_LIMIT, R.PRICE_ENDING, R.NO_COMPETITOR],
                                  [R.MAP_FLOOR, R.PRICE_ENDING, R.NO_CURRENT_PRICE, R.NO_COMPETITOR]]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"markup": -0.1}, "markup must be >= 0"),
    ({"undercut": 1.0}, r"undercut must be in \[0, 1\)"),
])
def test_bad_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        rule_based(10, **kwargs)


@settings(max_examples=150, deadline=None)
@given(market=markets(), rails=guardrails)
def test_rule_based_prices_are_guardrail_clean(market, rails):
    decision = rule_based(market.unit_cost, market.current_price, market.competitor_price, market.map_price, rails)
    assert_guardrail_clean(decision, market, rails)
