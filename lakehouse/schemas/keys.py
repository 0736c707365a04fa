"""Natural keys of each landing source.

A record without its key cannot be de-duplicated or merged, so batch ingestion quarantines it
(`missing_required`) and silver de-duplicates by it, latest ingestion wins.
"""

from lakehouse.schemas.decisions import DECISION_KEY

LANDING_KEYS: dict[str, tuple[str, ...]] = {
    "products": ("sku",),
    "suppliers": ("supplier_id", "sku", "valid_from"),
    "market_prices": ("sku", "competitor", "observed_at"),
    "fx_rates": ("rate_date", "currency"),
    "shipping_rates": ("carrier", "service_level", "zone", "weight_break_kg", "effective_from"),
    "shipping_zones": ("postal_prefix",),
    "customers": ("customer_id",),
    "transactions": ("event_id",),
    "clickstream": ("event_id",),
    # The API's decision log: Kafka only, no landing file.
    "decisions": DECISION_KEY,
}
