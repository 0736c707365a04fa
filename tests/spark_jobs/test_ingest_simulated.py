"""The batch ingestion job on the simulator's landing zone, checked against its dirt manifest."""

import json
from collections import Counter
from datetime import date

import pytest
from pyspark.sql import functions as F

from lakehouse.delta import read_delta
from lakehouse.settings import Settings
from lakehouse.sources import LANDING_SOURCES
from lakehouse.tables import table
from simulator.config import DirtRates, SimConfig
from simulator.generate import generate
from spark_jobs.ingest import run


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, spark, settings):
    root = tmp_path_factory.mktemp("simulated")
    own = Settings(state_dir=root, jars_dir=settings.jars_dir)
    # The late columns start on day 2 here so that a short history shows them.
    config = SimConfig(seed=11, skus=100, days=4, scale=0.3,
                       dirt=DirtRates(color_from_day=2, coupon_code_from_day=2))
    generate(config, own.landing_dir, own.truth_dir)
    run(spark, own, sorted(LANDING_SOURCES))
    manifest = json.loads((own.truth_dir / "dirt_manifest.json").read_text())
    return own, manifest


def _per_date(frame, *filters):
    for condition in filters:
        frame = frame.where(condition)
    counts = frame.groupBy("ingest_date").count().collect()
    return Counter({row.ingest_date.isoformat(): row["count"] for row in counts})


@pytest.mark.parametrize("source", sorted(LANDING_SOURCES))
def test_every_line_is_in_bronze_or_quarantined_and_only_corrupt_lines_are_quarantined(spark, ingested, source):
    settings, manifest = ingested
    if source not in manifest:
        pytest.skip(f"{source} carries no dirt")
    expected_bad = Counter({day: counts["corrupt_lines"] for day, counts in manifest[source].items()
                            if counts["corrupt_lines"]})
    expected_good = Counter({day: counts["rows"] - counts["corrupt_lines"] for day, counts in manifest[source].items()})

    bronze = read_delta(spark, table(f"bronze.{source}").location(settings))
    quarantine = read_delta(spark, table("bronze.quarantine").location(settings))

    assert _per_date(bronze) == expected_good
    assert _per_date(quarantine, F.col("source") == source) == expected_bad
    reasons = {row.reason for row in quarantine.where(F.col("source") == source).select("reason").distinct().collect()}
    assert reasons <= {"malformed_json", "malformed_csv: wrong number of fields"}


def test_columns_that_appear_mid_history_are_rescued(spark, ingested):
    settings, _ = ingested
    products = read_delta(spark, table("bronze.products").location(settings))
    with_color = products.where(F.col("_rescued_data").contains('"color"'))
    assert {r.ingest_date for r in with_color.select("ingest_date").distinct().collect()} == {
        date(2026, 8, 3), date(2026, 8, 4)}
    assert products.where("ingest_date < '2026-08-03' AND _rescued_data IS NOT NULL").count() == 0

    transactions = read_delta(spark, table("bronze.transactions").location(settings))
    coupons = transactions.where(F.col("_rescued_data").contains('"coupon_code"'))
    assert coupons.count() > 0
    assert coupons.where("ingest_date < '2026-08-03'").count() == 0
