import json
import os
import shutil
import subprocess
import sys
import time
from datetime import date, datetime

import numpy as np
import pyarrow as pa
import pytest

from lakehouse.delta_reader import DeltaReader
from lakehouse.settings import Settings
from lakehouse.tables import TABLES, Table
from serving.metrics import ServingMetrics
from serving.online_features import (
    PRICING_TABLE,
    OnlineFeatures,
    Product,
    RateCard,
    Zone,
    latest_per_sku,
    postal_prefix,
    pricing_features,
    rate_cards,
)

GOLD_SCHEMA = ("sku string, category string, as_of_date date, feature_time timestamp, conversion_rate double, "
               "units_7d int, is_anchor boolean")
PRODUCTS_SCHEMA = ("sku string, product_name string, category string, weight_kg double, length_cm double, "
                   "width_cm double, height_cm double, map_price_usd double, list_price_usd double")
RATES_SCHEMA = ("carrier string, service_level string, zone int, weight_break_kg double, base_rate_usd double, "
                "per_kg_over_usd double, volumetric_divisor int, fuel_surcharge_pct double, "
                "remote_surcharge_usd double, effective_from date")
ZONES_SCHEMA = "postal_prefix string, zone int, is_remote boolean"
T = datetime(2026, 10, 2, 6, 0)


def gold_rows(*rows) -> pa.Table:
    names = ["sku", "category", "as_of_date", "feature_time", "conversion_rate", "units_7d", "is_anchor"]
    return pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in rows], schema=pa.schema([
        ("sku", pa.string()), ("category", pa.string()), ("as_of_date", pa.date32()),
        ("feature_time", pa.timestamp("us", tz="UTC")), ("conversion_rate", pa.float64()), ("units_7d", pa.int32()),
        ("is_anchor", pa.bool_())]))


def rate_rows(effective: date, base: list[float], carrier="northpost", service="standard", zone=3) -> list[tuple]:
    return [(carrier, service, zone, brk, b, 1.5, 5000, 10.0, 12.0, effective)
            for brk, b in zip([0.5, 1.0, 2.0], base, strict=True)]


def test_latest_row_per_sku_and_the_feature_matrix():
    rows = gold_rows(("SKU-000002", "toys", date(2026, 10, 1), T, None, 3, False),
                     ("SKU-000001", "home", date(2026, 10, 2), T, 0.2, 5, True),
                     ("SKU-000001", "home", date(2026, 10, 1), T, 0.1, 4, False))

    latest = latest_per_sku(rows)

    assert latest.column("as_of_date").to_pylist() == [date(2026, 10, 2), date(2026, 10, 1)]
    features = pricing_features(latest)
    assert features.columns == ("conversion_rate", "units_7d", "is_anchor")
    np.testing.assert_array_equal(features.matrix, [[0.2, 5.0, 1.0], [np.nan, 3.0, 0.0]])
    assert features.rows == {"SKU-000001": 0, "SKU-000002": 1}
    np.testing.assert_array_equal(features.vector("SKU-000002", features.column_indices(["units_7d"])), [3.0])
    assert features.vector("SKU-999999") is None
    assert features.records["SKU-000001"]["category"] == "home"
    with pytest.raises(KeyError, match=r"pricing features lack columns \['margin_pct'\]"):
        features.column_indices(["units_7d", "margin_pct"])
    with pytest.raises(ValueError, match=r"gold.pricing_features lacks columns \['as_of_date'\]"):
        latest_per_sku(rows.drop_columns(["as_of_date"]))


def test_rate_card_effective_today_per_carrier_and_service():
    names = [f.split()[0] for f in RATES_SCHEMA.split(", ")]
    rows = pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in [
        *rate_rows(date(2026, 8, 1), [5.0, 6.0, 8.0]),
        *rate_rows(date(2026, 9, 15), [5.5, 6.6, 8.8]),
        *rate_rows(date(2026, 8, 1), [9.0, 10.0, 12.0], service="express"),
    ]])

    before = rate_cards(rows, date(2026, 9, 14))
    after = rate_cards(rows, date(2026, 9, 15))

    np.testing.assert_array_equal(before["northpost", "standard", 3].base_usd, [5.0, 6.0, 8.0])
    np.testing.assert_array_equal(after["northpost", "standard", 3].base_usd, [5.5, 6.6, 8.8])
    assert after["northpost", "standard", 3].effective_from == date(2026, 9, 15)
    assert after["northpost", "express", 3].effective_from == date(2026, 8, 1)
    assert rate_cards(rows, date(2026, 7, 31)) == {}


def test_rate_card_price_and_billable_weight_by_hand():
    card = RateCard("northpost", "standard", 3, date(2026, 8, 1), np.array([0.5, 1.0, 2.0]),
                    np.array([5.0, 6.0, 8.0]), per_kg_over_usd=1.5, volumetric_divisor=5000,
                    fuel_surcharge_pct=10.0, remote_surcharge_usd=12.0)

    # 0.5 -> 5.0, 0.7 -> the 1 kg break 6.0, 2.0 -> 8.0, 3.5 -> 8.0 + 1.5 * 1.5; then * 1.1 (+ 12 if remote)
    np.testing.assert_allclose(card.cost_usd([0.5, 0.7, 2.0, 3.5], False), [5.5, 6.6, 8.8, 11.275])
    assert card.cost_usd(3.5, True) == pytest.approx(23.275)
    # 30 x 20 x 10 cm = 6000 cm3 / 5000 = 1.2 kg volumetric, above the actual 1.0 kg
    assert card.billable_kg(1.0, 6000.0) == pytest.approx(1.2)
    np.testing.assert_allclose(card.billable_kg(np.array([2.0, 0.1]), np.array([6000.0, 500.0])), [2.0, 0.1])


@pytest.mark.parametrize(("typed", "prefix"), [
    ("02139", "021"), ("2139", "021"), (" 02139-1234 ", "021"), ("995", "009"), ("99501", "995"),
    ("ABCDE", None), ("", None), (None, None), ("021391", None)])
def test_postal_prefix_as_silver_standardizes_zips(typed, prefix):
    assert postal_prefix(typed) == prefix


# --- the store, on Delta tables written by Spark ---------------------------------------------------

def write(spark, settings: Settings, name: str, schema: str, rows: list[tuple], mode: str = "append") -> None:
    target = TABLES[name]
    (spark.createDataFrame(rows, schema).write.format("delta").mode(mode)
     .partitionBy(*target.partition_by).save(target.location(settings)))


@pytest.fixture
def registered_gold(monkeypatch):
    """gold.pricing_features as the gold layer registers it (one row per sku and as_of_date, by category)."""
    if PRICING_TABLE not in TABLES:
        monkeypatch.setitem(TABLES, PRICING_TABLE, Table(PRICING_TABLE, ("category",), "features", "test"))


@pytest.fixture(scope="module")
def silver_tables(spark, settings, tmp_path_factory) -> Settings:
    """The silver tables the store reads, written once by Spark (as the pipeline writes them)."""
    written = Settings(state_dir=tmp_path_factory.mktemp("silver"), jars_dir=settings.jars_dir)
    write(spark, written, "silver.products", PRODUCTS_SCHEMA, [
        ("SKU-000001", "Lamp", "home", 1.0, 30.0, 20.0, 10.0, None, 24.99),
        ("SKU-000002", "Robot", "toys", 0.4, 10.0, 10.0, 10.0, 19.0, 29.99)])
    write(spark, written, "silver.shipping_rates", RATES_SCHEMA,
          rate_rows(date(2026, 8, 1), [5.0, 6.0, 8.0]) + rate_rows(date(2026, 9, 15), [5.5, 6.6, 8.8]))
    write(spark, written, "silver.shipping_zones", ZONES_SCHEMA, [("021", 3, False), ("995", 8, True)])
    return written


@pytest.fixture
def lake(silver_tables, own_settings, registered_gold) -> Settings:
    """A copy of the silver tables in this test's own lake (Delta logs hold relative paths)."""
    shutil.copytree(silver_tables.lake_root, own_settings.lake_root)
    return own_settings


class CountingReader(DeltaReader):
    def __init__(self):
        super().__init__()
        self.reads: list[str] = []

    def read(self, location, version, columns=None):
        self.reads.append(location.rsplit("/", 2)[-2] + "." + location.rsplit("/", 1)[-1])
        return super().read(location, version, columns)


def test_store_builds_lookups_from_the_tables_and_swaps_on_a_new_version(spark, lake):
    metrics, reader = ServingMetrics(), CountingReader()
    store = OnlineFeatures(lake, metrics, reader, today=lambda: date(2026, 9, 15))
    try:
        assert store.refresh() is True
        empty = store.snapshot
        assert store.versions() == {PRICING_TABLE: None, "silver.products": 0, "silver.shipping_rates": 0,
                                    "silver.shipping_zones": 0}
        assert not empty.complete and empty.pricing.rows == {}
        assert empty.product("SKU-000002") == Product("SKU-000002", "toys", 0.4, 10.0, 10.0, 10.0, 19.0, 29.99)
        assert empty.zone("99501-0001") == Zone(8, True) and empty.zone("02139") == Zone(3, False)
        assert empty.zone("12345") is None and empty.zone("junk") is None
        card = empty.rate_card("northpost", "standard", 3)
        assert card.effective_from == date(2026, 9, 15) and card.cost_usd(0.7, False) == pytest.approx(6.6 * 1.1)
        assert store.refresh() is False  # nothing changed: the same snapshot
        assert store.snapshot is empty

        write(spark, lake, PRICING_TABLE, GOLD_SCHEMA, [
            ("SKU-000001", "home", date(2026, 10, 1), T, 0.1, 4, False),
            ("SKU-000001", "home", date(2026, 10, 2), T, 0.2, 5, True)])
        assert store.refresh() is True
        first = store.snapshot
        assert first.complete and first.versions[PRICING_TABLE] == 0
        np.testing.assert_array_equal(first.pricing.vector("SKU-000001"), [0.2, 5.0, 1.0])
        assert first.products == empty.products
        assert sorted(reader.reads) == sorted(["silver.products", "silver.shipping_rates", "silver.shipping_zones",
                                               PRICING_TABLE])  # unchanged tables are not read again

        write(spark, lake, PRICING_TABLE, GOLD_SCHEMA, [("SKU-000001", "home", date(2026, 10, 3), T, 0.3, 6, True),
                                                        ("SKU-000002", "toys", date(2026, 10, 3), T, 0.5, 1, False)])
        assert store.refresh() is True
        second = store.snapshot
        assert second.versions[PRICING_TABLE] == 1
        np.testing.assert_array_equal(second.pricing.matrix, [[0.3, 6.0, 1.0], [0.5, 1.0, 0.0]])
        np.testing.assert_array_equal(first.pricing.vector("SKU-000001"), [0.2, 5.0, 1.0])  # old one untouched
        assert metrics.registry.get_sample_value("lakehouse_online_features_table_version",
                                                 {"table": PRICING_TABLE}) == 1
    finally:
        store.close()


def test_a_new_day_picks_the_rate_card_that_became_effective(lake):
    today = [date(2026, 9, 14)]
    store = OnlineFeatures(lake, today=lambda: today[0])
    try:
        store.refresh()
        assert store.snapshot.rate_card("northpost", "standard", 3).effective_from == date(2026, 8, 1)
        today[0] = date(2026, 9, 15)
        assert store.refresh() is True
        assert store.snapshot.rate_card("northpost", "standard", 3).effective_from == date(2026, 9, 15)
        assert store.versions()["silver.shipping_rates"] == 0
    finally:
        store.close()


def test_background_refresh_picks_up_a_new_version(spark, lake):
    store = OnlineFeatures(lake.model_copy(update={"online_features_refresh_s": 0.2})).start()
    try:
        assert store.versions()["silver.shipping_zones"] == 0
        write(spark, lake, "silver.shipping_zones", ZONES_SCHEMA, [("100", 2, False)])
        deadline = time.monotonic() + 30
        while store.versions()["silver.shipping_zones"] != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.versions()["silver.shipping_zones"] == 1
        assert store.snapshot.zone("10001") == Zone(2, False)
    finally:
        store.close()


_SERVER_LIKE = """
import json, sys
from datetime import date
from lakehouse.settings import Settings
from serving.online_features import OnlineFeatures
store = OnlineFeatures(Settings(state_dir=sys.argv[1]), today=lambda: date(2026, 9, 15)).start()
snapshot = store.snapshot
print(json.dumps({"child": store.reader._process.pid, "zones": len(snapshot.zones), "cards": len(snapshot.rate_cards)}))
"""


def test_a_process_using_the_store_exits_cleanly_and_takes_the_reader_along(lake):
    # No close(): the interpreter ends as a killed server would; delta-rs never ran in it.
    done = subprocess.run([sys.executable, "-c", _SERVER_LIKE, str(lake.state_dir)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert (answer["zones"], answer["cards"]) == (2, 1)
    deadline = time.monotonic() + 10
    while _alive(answer["child"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(answer["child"])  # its stdin closed with the parent: it left with os._exit


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) is gone for our purpose.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[1][0] != "Z"
