"""The e-commerce platform's reads of the operational database: views (and one function) in schema `shop`.

Created again by every sync of the table they read, in its transaction (docs/operational.md shows them with
example queries). Both lookups use the synced table's primary key index.
"""

from __future__ import annotations

CURRENT_PRICES = """
CREATE OR REPLACE VIEW shop.current_prices AS
SELECT DISTINCT ON (sku) sku, category, price_usd, valid_from, strategy, guardrails, rule_based_price_usd,
       model_name, model_version, scored_at
FROM gold.prices
WHERE valid_from <= current_date
ORDER BY sku, valid_from DESC
"""
COMMENT_CURRENT_PRICES = ("COMMENT ON VIEW shop.current_prices IS 'The price of each SKU now: its gold.prices row "
                          "of the latest valid_from on or before today. One row per sku.'")

SHIPPING_RATES = """
CREATE OR REPLACE VIEW shop.shipping_rates AS
SELECT delivery_zone, service_level, weight_band_kg, carrier, expected_cost_usd, rate_card_cost_usd, is_cheapest,
       valid_from, model_name, model_version
FROM gold.shipping_rate_cards
WHERE valid_from = (SELECT max(valid_from) FROM gold.shipping_rate_cards WHERE valid_from <= current_date)
"""
COMMENT_SHIPPING_RATES = ("COMMENT ON VIEW shop.shipping_rates IS 'The rate cards in force: per delivery zone, "
                          "service level, weight band and carrier, the expected invoice of a parcel at the band''s "
                          "upper weight. One row per delivery_zone, service_level, weight_band_kg, carrier.'")

# The platform's shipping lookup: the carriers' rates for a parcel of `weight_kg` (billable) in a zone and service
# level, from its weight band (the smallest band that holds it), cheapest first.
SHIPPING_QUOTE = """
CREATE OR REPLACE FUNCTION shop.shipping_quote(zone integer, weight_kg double precision, level text)
RETURNS SETOF shop.shipping_rates LANGUAGE sql STABLE AS $$
  SELECT * FROM shop.shipping_rates
  WHERE delivery_zone = zone AND service_level = level
    AND weight_band_kg = (SELECT min(weight_band_kg) FROM shop.shipping_rates
                          WHERE delivery_zone = zone AND service_level = level AND weight_band_kg >= weight_kg)
  ORDER BY expected_cost_usd
$$
"""

# Per synced table, the statements to run after each load of it.
VIEWS: dict[str, tuple[str, ...]] = {
    "gold.prices": ("CREATE SCHEMA IF NOT EXISTS shop", CURRENT_PRICES, COMMENT_CURRENT_PRICES),
    "gold.shipping_rate_cards": ("CREATE SCHEMA IF NOT EXISTS shop", SHIPPING_RATES, COMMENT_SHIPPING_RATES,
                                 SHIPPING_QUOTE),
}
