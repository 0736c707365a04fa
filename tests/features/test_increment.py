"""Which silver changes move which gold days: hand-made change feeds."""

from datetime import date

import pytest

from features.increment import PRODUCT_COLUMNS, changed_rows, rebuild_from

PRODUCT = "sku string, category string, map_price_usd double, launch_date date, weight_kg double, " \
          "length_cm double, width_cm double, height_cm double, list_price_usd double, " \
          "_change_type string, _commit_version long"


def _product(sku, change, version, launch=date(2026, 8, 3), map_price=9.0, list_price=10.0):
    return (sku, "toys", map_price, launch, 0.5, 10.0, 10.0, 10.0, list_price, change, version)


def _since(spark, source, rows, schema):
    return rebuild_from(changed_rows(source, spark.createDataFrame(rows, schema)))


def test_the_earliest_changed_date_of_the_dated_tables_is_where_gold_starts(spark):
    schema = "event_date date, _change_type string, _commit_version long"
    rows = [(date(2026, 8, 9), "insert", 4), (date(2026, 8, 6), "update_postimage", 5),
            (date(2026, 8, 5), "update_preimage", 5)]

    assert _since(spark, "clickstream", rows, schema) == (None, date(2026, 8, 5))


def test_a_list_price_change_moves_nothing_a_new_sku_counts_from_its_launch_and_a_map_change_rebuilds_all(spark):
    assert "list_price_usd" not in PRODUCT_COLUMNS
    list_price_only = [_product("A", "update_preimage", 3, list_price=10.0),
                       _product("A", "update_postimage", 3, list_price=12.0)]
    assert _since(spark, "products", list_price_only, PRODUCT) == (None, None)

    new_sku = [_product("B", "insert", 3, launch=date(2026, 8, 7))]
    assert _since(spark, "products", list_price_only + new_sku, PRODUCT) == (None, date(2026, 8, 7))

    map_change = [_product("A", "update_preimage", 4, map_price=9.0),
                  _product("A", "update_postimage", 4, map_price=8.0)]
    assert _since(spark, "products", new_sku + map_change, PRODUCT)[0] == \
        "a product's category, MAP, launch date or measures changed"


@pytest.mark.parametrize(("record", "expected"), [
    ('{"transaction_date": "2026-08-04", "order_id": "O-1"}', (None, date(2026, 8, 4))),
    ('{"transaction_date": "garbled", "order_id": "O-1"}', ("a changed quarantine row has no date", None)),
])
def test_a_quarantined_order_line_counts_from_its_date_and_an_undated_one_rebuilds_all(spark, record, expected):
    schema = "source string, record string, _change_type string, _commit_version long"
    rows = [("transactions", record, "insert", 2), ("clickstream", '{"event_date": "2026-08-01"}', "insert", 2)]

    full, since = _since(spark, "quarantine", rows, schema)

    assert (full, since if full is None else None) == expected
