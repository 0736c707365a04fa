"""The rule-based pricing strategy: cost-plus, matched down to a cheaper competitor, then the guardrails.

It is the control arm of the A/B test and the fallback when no model is available, so it needs only the
unit cost; current, competitor and MAP prices are used when known (NaN or None = unknown). Pure numpy.
"""

from __future__ import annotations

import numpy as np

from pricing.guardrails import DEFAULT_GUARDRAILS, Decision, Guardrails, Market, decide, market_interval

RULE_BASED = "rule_based"
DEFAULT_MARKUP = 0.35
DEFAULT_UNDERCUT = 0.01


def rule_based(unit_cost, current_price=None, competitor_price=None, map_price=None,
               rails: Guardrails = DEFAULT_GUARDRAILS, markup: float = DEFAULT_MARKUP,
               undercut: float = DEFAULT_UNDERCUT) -> Decision:
    """One price per SKU: candidate cost * (1 + markup), or competitor minimum * (1 - undercut) where that is
    lower; then the guardrails, whose floor keeps a match from going below cost * (1 + min margin) or MAP
    (recorded as MARGIN_FLOOR / MAP_FLOOR)."""
    if not 0 <= markup < np.inf:
        raise ValueError(f"markup must be >= 0, got {markup}")
    if not 0 <= undercut < 1:
        raise ValueError(f"undercut must be in [0, 1), got {undercut}")
    market = Market.of(unit_cost, current_price, competitor_price, map_price)
    cost_plus = market.unit_cost * (1 + markup)
    match = market.competitor_price * (1 - undercut)
    candidate = np.where(match < cost_plus, match, cost_plus)  # NaN (no competitor) compares False
    return decide(candidate, market_interval(market, rails), rails, RULE_BASED)
