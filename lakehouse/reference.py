"""Reference sets of the business, declared once: the quality suites check against them, the simulator's
world is built from them, and the API validates requests with them."""

from __future__ import annotations

CURRENCIES: tuple[str, ...] = ("USD", "EUR", "GBP", "CNY", "CAD")
CATEGORIES: tuple[str, ...] = ("electronics", "home", "kitchen", "apparel", "beauty", "toys", "sports", "books",
                               "grocery", "garden")
CARRIERS: tuple[str, ...] = ("northpost", "rapidparcel", "bluefreight")
SERVICE_LEVELS: tuple[str, ...] = ("standard", "express")
SEGMENTS: tuple[str, ...] = ("new", "returning", "loyal")
EVENT_TYPES: tuple[str, ...] = ("view", "add_to_cart", "remove_from_cart", "checkout", "purchase", "abandon")
# No price of the catalogue, ours or a competitor's, in any currency reaches this: a larger one is a typo.
MAX_PRICE = 100_000.0
# Delivery zones of the zone chart: 1 (nearest) to ZONE_COUNT.
ZONE_COUNT = 8
# The API's decision log (serving.decision_log).
ENDPOINTS: tuple[str, ...] = ("pricing", "shipping")
# Pricing answers: the optimizer (daily book), live repricing or the rule; shipping: the model or the rate card.
STRATEGIES: tuple[str, ...] = ("optimizer", "live", "rule_based", "model", "rate_card")
