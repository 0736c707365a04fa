"""Pricing decisions: guardrails with reason codes, the profit-maximising optimizer and the rule-based
strategy. Pure numpy, shared by batch scoring and the API; docs/pricing.md describes the rules."""

from pricing.guardrails import (
    DEFAULT_GUARDRAILS,
    Decision,
    Guardrails,
    Interval,
    Reason,
    apply_guardrails,
    decode_reasons,
    feasible_interval,
    reason_bits,
)
from pricing.optimizer import implied_elasticity, optimize, response_curve
from pricing.rules import rule_based

__all__ = [
    "DEFAULT_GUARDRAILS",
    "Decision",
    "Guardrails",
    "Interval",
    "Reason",
    "apply_guardrails",
    "decode_reasons",
    "feasible_interval",
    "implied_elasticity",
    "optimize",
    "reason_bits",
    "response_curve",
    "rule_based",
]
