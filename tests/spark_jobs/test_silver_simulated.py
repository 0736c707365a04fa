"""The silver promotion on the simulator's landing zone, checked against its dirt manifest."""

import json
from collections import Counter

import pytest
from pyspark.sql import functions as F

from lakehouse.delta import delta_exists, read_delta, table_version
from lakehouse.settings import Settings
from lakehouse.sources import LANDING_SOURCES, PROMOTION_ORDER
from lakehouse.tables import TABLES, table
from simulator.config import DirtRates, SimConfig
from simulator.generate import generate
from spark_jobs import ingest
from spark_jobs import silver as silver_job

# The manifest defects each source's drop rules remove, exactly: (nulls_by_column keys, out_of_range?).
DROPPED = {
    "transactions": (("unit_price_paid",), True),
    "clickstream": (("price_shown",), True),
    "market_prices": (("price",), True),
    "suppliers": ((), True),
    "customers": ((), False),
}
# warn rules that count exactly the nulls injected into one column: (source, rule, manifest column).
WARNED_NULLS = [("transactions", "postal_code_present", "postal_code"),
                ("transactions", "carrier_present", "carrier"),
                ("transactions", "shipping_charged_present", "shipping_charged"),
                ("clickstream", "device_present", "device"), ("clickstream", "referrer_present", "referrer"),
                ("customers", "city_present", "city"), ("customers", "region_present", "region"),
                ("customers", "segment_present", "segment"), ("suppliers", "supplier_name_present", "supplier_name"),
                ("suppliers", "lead_time_present", "lead_time_days")]


@pytest.fixture(scope="module")
def promoted(tmp_path_factory, spark, settings):
    own = Settings(state_dir=tmp_path_factory.mktemp("silver_simulated"), jars_dir=settings.jars_dir)
    config = SimConfig(seed=11, skus=100, days=4, scale=0.3, dirt=DirtRates(color_from_day=2, coupon_code_from_day=2))
    generate(config, own.landing_dir, own.truth_dir)
    ingest.run(spark, own, sorted(LANDING_SOURCES))
    results = silver_job.run(spark, own)
    manifest = json.loads((own.truth_dir / "dirt_manifest.json").read_text())
    return own, manifest, {r.source: r for r in results}


def _total(manifest, source, key) -> int:
    return sum(day[key] for day in manifest[source].values())


def _by_column(manifest, source, key) -> Counter:
    return sum((Counter(day.get(key, {})) for day in manifest[source].values()), Counter())


@pytest.mark.parametrize("source", sorted(DROPPED))
def test_silver_rows_are_the_distinct_good_rows_the_manifest_implies(spark, promoted, source):
    settings, manifest, results = promoted
    null_columns, out_of_range = DROPPED[source]
    dropped = (sum(_by_column(manifest, source, "nulls_by_column")[c] for c in null_columns)
               + (_total(manifest, source, "out_of_range") if out_of_range else 0))
    distinct_good = (_total(manifest, source, "rows") - _total(manifest, source, "corrupt_lines")
                     - _total(manifest, source, "duplicates"))

    silver = read_delta(spark, table(f"silver.{source}").location(settings))
    quarantine = read_delta(spark, table("silver.quarantine").location(settings)).where(F.col("source") == source)

    assert silver.count() == distinct_good - dropped
    assert quarantine.count() == dropped
    assert (results[source].promoted, results[source].quarantined) == (distinct_good - dropped, dropped)


def test_warn_rules_count_exactly_the_injected_nulls(spark, promoted):
    settings, manifest, _ = promoted
    quality = read_delta(spark, table("ops.quality_results").location(settings))
    counts = {(r.table, r.rule): r.unexpected_count for r in quality.collect()}

    for source, rule, column in WARNED_NULLS:
        assert counts[(f"silver.{source}", rule)] == _by_column(manifest, source, "nulls_by_column")[column], rule


def test_every_product_key_ends_in_silver_or_quarantine_once(spark, promoted):
    settings, _, _ = promoted
    silver = read_delta(spark, table("silver.products").location(settings))
    quarantined = read_delta(spark, table("silver.quarantine").location(settings)).where("source = 'products'")
    keys = {r.sku for r in silver.select("sku").collect()}

    assert silver.count() == len(keys)
    assert all(k.startswith("SKU-") and len(k) == 10 for k in keys)
    bronze_keys = read_delta(spark, table("bronze.products").location(settings)).select(
        F.lpad(F.regexp_extract("sku", r"(\d+)", 1), 6, "0").alias("n")).distinct().count()
    lost = {json.loads(r.record_key)["sku"] for r in quarantined.collect()} - keys
    assert len(keys) + len(lost) == bronze_keys


def test_columns_that_appear_mid_history_are_reported_as_schema_drift(spark, promoted):
    settings, _, _ = promoted
    drift = read_delta(spark, table("ops.schema_drift").location(settings))

    found = {(r.source, r.kind, r.column) for r in drift.collect()}
    assert found == {("products", "new_field", "color"), ("transactions", "new_field", "coupon_code")}


def test_a_rerun_reads_nothing_and_changes_no_table(spark, promoted):
    settings, _, _ = promoted
    names = [n for n in TABLES if n.split(".")[0] in ("silver", "ops")
             and delta_exists(spark, TABLES[n].location(settings))]
    versions = {n: table_version(spark, TABLES[n].location(settings)) for n in names}
    transactions = sorted(read_delta(spark, table("silver.transactions").location(settings)).collect())

    results = silver_job.run(spark, settings)

    assert [r.rows_read for r in results] == [0] * len(PROMOTION_ORDER)
    assert {n: table_version(spark, TABLES[n].location(settings)) for n in names} == versions
    assert sorted(read_delta(spark, table("silver.transactions").location(settings)).collect()) == transactions
