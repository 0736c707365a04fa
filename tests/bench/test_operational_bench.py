import numpy as np

from bench.operational import BANDS_KG, CARRIERS, LEVELS, ZONES, prices, rate_cards
from lakehouse.schemas.scores import PRICES, SHIPPING_RATE_CARDS


def test_the_bench_tables_have_golds_columns_and_grain():
    rng = np.random.default_rng(0)
    books, cards = prices(3, 4, rng), rate_cards(2, rng)
    assert list(books.columns) == PRICES.fieldNames() and list(cards.columns) == SHIPPING_RATE_CARDS.fieldNames()
    assert len(books) == 12 and not books.duplicated(["sku", "valid_from"]).any()
    assert sorted(books["sku"].unique()) == ["SKU-000000", "SKU-000001", "SKU-000002"]
    assert len(cards) == len(ZONES) * len(BANDS_KG) * len(LEVELS) * len(CARRIERS) * 2
    per_parcel = cards.groupby(["delivery_zone", "weight_band_kg", "service_level", "valid_from"])["is_cheapest"]
    assert (per_parcel.sum() == 1).all()
    assert (books["price_usd"] > books["unit_cost_usd"]).all()
