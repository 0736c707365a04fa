"""The gold job on a small simulated data set: ingest -> silver -> gold in a temp lake, checked against the
simulator's truth; re-runs, a failing gate and the quarantine."""

import shutil
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

import lakehouse.spark
from expectations.suites import GOLD_SUITES
from lakehouse.delta import delta_exists, read_delta, table_version
from lakehouse.quality import BETWEEN, Rule, Severity
from lakehouse.settings import Settings
from lakehouse.sources import LANDING_SOURCES
from lakehouse.tables import TABLES, table
from orchestration import cli
from simulator.config import SimConfig
from simulator.generate import generate
from simulator.truth import load
from spark_jobs import gold, ingest, silver


@pytest.fixture(scope="module")
def built(tmp_path_factory, spark, settings):
    own = Settings(state_dir=tmp_path_factory.mktemp("gold"), jars_dir=settings.jars_dir)
    # Four days: the rate change (day days // 2) falls inside, so both rate-card versions are used.
    generate(SimConfig(seed=11, skus=100, days=4, scale=0.3), own.landing_dir, own.truth_dir)
    ingest.run(spark, own, sorted(LANDING_SOURCES))
    silver.run(spark, own)
    return own, gold.run(spark, own, run_id="build-1")


def _read(spark, settings, name):
    return read_delta(spark, table(name).location(settings))


def _versions(spark, settings, layers=("gold", "ops")) -> dict[str, int]:
    return {n: table_version(spark, t.location(settings)) for n, t in TABLES.items()
            if t.layer in layers and delta_exists(spark, t.location(settings))}


def test_the_shipping_baseline_is_the_simulator_s_rate_card_for_every_order(spark, built):
    settings, _ = built
    shipping = _read(spark, settings, "gold.shipping_features").toPandas()
    truth = load(settings.truth_dir)

    # Our parcel, priced by the simulator's own rate-card function: the same price, to the cent.
    assert np.allclose(truth.billable_weight_kg(shipping.actual_weight_kg, shipping.volume_cm3, shipping.carrier),
                       shipping.billable_weight_kg, rtol=0, atol=1e-9)
    simulator_price = truth.rate_card_cost(shipping.carrier, shipping.service_level, shipping.delivery_zone,
                                           shipping.billable_weight_kg, shipping.order_date.values,
                                           shipping.is_remote.astype(bool))
    assert np.abs(simulator_price - shipping.rate_card_cost_usd).max() <= 0.01

    # Against the true shipments: silver converts lb and inches rounded to 4 and 2 decimals
    # (docs/simulator.md), which moves a billable weight by well under 0.1%.
    shipments = pd.read_parquet(settings.truth_dir / "shipments.parquet").set_index("order_id")
    true_price = shipments.rate_card_cost.reindex(shipping.order_id).to_numpy()
    assert not np.isnan(true_price).any()
    assert (np.abs(true_price - shipping.rate_card_cost_usd) <= 0.01 + 1e-3 * true_price).all()
    assert np.allclose(shipments.actual_cost.reindex(shipping.order_id), shipping.actual_shipping_cost_usd)


def test_every_order_and_every_view_is_in_gold_or_in_its_quarantine(spark, built):
    settings, result = built
    silver_orders = _read(spark, settings, "silver.transactions").select("order_id").distinct()
    quarantine = _read(spark, settings, "gold.quarantine")
    quarantined_orders = quarantine.where(F.col("table") == "shipping_features").select(
        F.get_json_object("record_key", "$.order_id").alias("order_id"))

    assertDataFrameEqual(_read(spark, settings, "gold.shipping_features").select("order_id")
                         .unionByName(quarantined_orders), silver_orders)
    views = _read(spark, settings, "silver.clickstream").where(F.col("event_type") == "view").count()
    quarantined_views = quarantine.where(F.col("table") == "pricing_daily").select(
        F.sum(F.get_json_object("record", "$.views").cast("long"))).first()[0] or 0
    assert _read(spark, settings, "gold.pricing_daily").agg(F.sum("views")).first()[0] + quarantined_views == views
    assert result.quarantined["shipping_features"] == quarantined_orders.count() > 0


def test_quarantined_rows_carry_the_names_of_the_rules_they_failed(spark, built):
    settings, _ = built
    quarantine = _read(spark, settings, "gold.quarantine").where(F.col("table") == "shipping_features")
    lost_lines = _read(spark, settings, "silver.quarantine").where(F.col("source") == "transactions").select(
        F.get_json_object("record", "$.order_id").alias("order_id"))
    # An order with a line silver quarantined is an incomplete parcel: gold must not price it.
    incomplete = (quarantine.where(F.array_contains("failed_rules", "parcel_measured"))
                  .select(F.get_json_object("record_key", "$.order_id").alias("order_id")))
    silver_orders = _read(spark, settings, "silver.transactions").select("order_id").distinct()

    assert lost_lines.join(silver_orders, "order_id").subtract(incomplete).count() == 0
    drop_rules = {r.name for r in GOLD_SUITES["shipping_features"] if r.severity is Severity.DROP}
    assert {rule for row in quarantine.collect() for rule in row.failed_rules} <= drop_rules
    # A quarantined order without a parcel weight has no billable weight, so no rate card price either.
    unpriced = quarantine.where(F.array_contains("failed_rules", "parcel_measured")
                                & ~F.array_contains("failed_rules", "rate_card_found"))
    assert unpriced.count() == 0
    # SKU-days of a product silver quarantined (so it has no category) are quarantined in gold.
    daily = _read(spark, settings, "gold.quarantine").where(F.col("table") == "pricing_daily").select(
        "failed_rules", F.get_json_object("record_key", "$.sku").alias("sku"))
    lost_products = _read(spark, settings, "silver.quarantine").where(F.col("source") == "products").select(
        F.get_json_object("record_key", "$.sku").alias("sku")).subtract(
        _read(spark, settings, "silver.products").select("sku"))
    assertDataFrameEqual(daily.select("sku").distinct(), lost_products)
    assert {tuple(r.failed_rules) for r in daily.collect()} <= {("category_present",)}


def test_a_rerun_on_unchanged_silver_writes_nothing(spark, built):
    settings, _ = built
    before = _versions(spark, settings)

    result = gold.run(spark, settings)

    assert result.skipped and result.summary() == "nothing gold reads changed since the last build: nothing to do"
    assert _versions(spark, settings) == before


def test_a_failed_fail_rule_leaves_every_gold_table_unchanged_and_exits_2_naming_it(spark, built, monkeypatch,
                                                                                     capsys):
    settings, _ = built
    never_heavy = Rule("parcels_under_1_gram", Severity.FAIL, BETWEEN,
                       {"column": "billable_weight_kg", "max_value": 0.001})
    monkeypatch.setattr(gold, "GOLD_SUITES",
                        {**GOLD_SUITES, "shipping_features": (*GOLD_SUITES["shipping_features"], never_heavy)})
    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    monkeypatch.setattr(lakehouse.spark, "get_spark", lambda *args: spark)  # the CLI imports it when it runs
    gold_versions = _versions(spark, settings, layers=("gold",))

    assert cli.main(["gold", "--full-refresh"]) == 2

    assert "shipping_features.parcels_under_1_gram" in capsys.readouterr().err
    assert _versions(spark, settings, layers=("gold",)) == gold_versions
    failed = _read(spark, settings, "ops.quality_results").where(~F.col("success")).select("table", "rule", "severity")
    assert Row("gold.shipping_features", "parcels_under_1_gram", "fail") in failed.collect()


def test_the_demand_profile_spreads_each_sku_s_recent_weekly_views_over_the_hours_of_the_week(spark, built):
    settings, _ = built
    profile = _read(spark, settings, "gold.demand_profile").toPandas()
    daily = _read(spark, settings, "gold.pricing_daily").toPandas()
    # Four days of history, all within the profile's 28 days: a week of it is 7/28 of the 28-day sum.
    weekly = daily.dropna(subset=["category"]).groupby("sku")["views"].sum() * 7 / 28
    spread = profile.groupby("sku")["expected_views_per_hour"].sum()
    pd.testing.assert_series_equal(spread.sort_index(), weekly.loc[spread.index].sort_index().astype(float),
                                   check_names=False, rtol=1e-9)
    assert set(profile["day_of_week"]) <= set(range(1, 8)) and set(profile["hour_of_day"]) <= set(range(24))
    assert (profile["as_of_date"] == daily["date"].max() + pd.Timedelta(days=1)).all()


def test_the_build_records_the_silver_versions_it_read(spark, built):
    settings, _ = built
    progress = _read(spark, settings, "ops.gold_progress").where(F.col("run_id") == "build-1")

    assert {r.silver_table: r.silver_version for r in progress.collect()} == gold.silver_versions(spark, settings)


GOLD_BUILT = ("gold.pricing_daily", "gold.pricing_features", "gold.demand_profile", "gold.shipping_features")


@pytest.fixture(scope="module")
def increments(tmp_path_factory, spark, settings):
    """A lake built from six days, then given two more (with rows that land late, dated in earlier days):
    the second gold build is incremental; returns the settings, both results and the gold versions after it."""
    own = Settings(state_dir=tmp_path_factory.mktemp("gold_increments"), jars_dir=settings.jars_dir)
    scratch = tmp_path_factory.mktemp("increments_landing")
    config = SimConfig(seed=12, skus=100, days=8, scale=0.3)
    generate(config, scratch, own.truth_dir)
    dates = [config.day_date(day).isoformat() for day in range(config.days)]
    results = []
    for batch in (dates[:6], dates[6:]):
        for folder in scratch.glob("*/ingest_date=*"):
            if folder.name.removeprefix("ingest_date=") in batch:
                shutil.copytree(folder, own.landing_dir / folder.parent.name / folder.name)
        ingest.run(spark, own, sorted(LANDING_SOURCES))
        silver.run(spark, own)
        results.append(gold.run(spark, own))
    return own, results, {name: table_version(spark, table(name).location(own)) for name in GOLD_BUILT}


def test_an_increment_recomputes_from_its_earliest_late_row_and_equals_a_full_refresh(spark, increments):
    settings, (first, increment), versions = increments
    new_day = SimConfig().start_date + timedelta(days=6)
    earliest = min(_read(spark, settings, f"silver.{source}").where(F.col("ingest_date") >= F.lit(new_day))
                   .agg(F.min(column)).first()[0]
                   for source, column in (("clickstream", "event_date"), ("transactions", "transaction_date")))

    assert first.full_reason == "first build" and first.since is None
    assert increment.full_reason is None
    # Rows that landed on the new days but are dated earlier (late) move the start back.
    assert increment.since <= earliest < new_day

    full = gold.run(spark, settings, full_refresh=True)

    assert full.full_reason == "full refresh"
    for name in GOLD_BUILT:
        location = table(name).location(settings)
        assertDataFrameEqual(read_delta(spark, location, versions[name]), read_delta(spark, location))
    quarantine = _read(spark, settings, "gold.quarantine")
    before = read_delta(spark, table("gold.quarantine").location(settings),
                        table_version(spark, table("gold.quarantine").location(settings)) - 1)
    assertDataFrameEqual(before.drop("run_id"), quarantine.drop("run_id"))
