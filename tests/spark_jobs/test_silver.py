"""The silver promotion job on a small hand-made bronze lake: MERGE, quarantine, gates, re-runs, late rows."""

from datetime import date, datetime

import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual
from silver_helpers import append_bronze

import lakehouse.spark
from lakehouse.delta import delta_exists, read_delta, table_version
from lakehouse.quality import QualityGateError
from lakehouse.settings import Settings
from lakehouse.spark import profiled
from lakehouse.tables import TABLES, table
from orchestration import cli
from spark_jobs import silver
from spark_jobs.silver import run

SOURCES = ["fx_rates", "shipping_zones", "transactions"]
T0, T1 = datetime(2026, 8, 3, 6, 0), datetime(2026, 8, 4, 6, 0)
D1, D2, D3, D4 = (date(2026, 8, d) for d in (1, 2, 3, 4))


def _line(event_id: str, **changes) -> dict:
    return {"event_id": event_id, "order_id": f"o-{event_id}", "line_number": 1, "customer_id": "c1",
            "sku": "SKU-000007", "quantity": 1, "unit_price_paid": 10.0, "currency": "USD",
            "event_time": "2026-08-03T10:00:00.000-04:00", "postal_code": "02139", "carrier": "northpost",
            "service_level": "standard", "shipping_charged": 5.0, "actual_shipping_cost": 4.0, "session_id": "s1",
            **changes}


def _fx(day: date, eur: float) -> list[tuple]:
    return [({"rate_date": day, "currency": c, "rate_to_usd": r}, None, T0, day)
            for c, r in (("USD", 1.0), ("EUR", eur))]


def _bronze_lake(spark, own: Settings) -> None:
    append_bronze(spark, own, "fx_rates", _fx(D1, 1.10) + _fx(D3, 1.20))
    append_bronze(spark, own, "shipping_zones", [
        ({"postal_prefix": p, "zone": z, "is_remote": r}, None, T0, D1) for p, z, r in (("021", 3, False),
                                                                                      ("995", 8, True))])
    append_bronze(spark, own, "transactions", [
        (_line("e1", currency="EUR"), None, T0, D3),
        (_line("e1", currency="EUR"), None, T0, D3),  # exact duplicate in the same file
        (_line("e2", postal_code="99501-0042"), '{"coupon_code":"SAVE5"}', T0, D3),
        (_line("e3", quantity=-1), None, T0, D3),  # out of range: dropped
        (_line("e4", unit_price_paid=None, quantity=0), None, T0, D3),  # fails two drop rules
        (_line("e5", postal_code="55555"), None, T0, D3),  # unknown zone: warned, kept
    ])


@pytest.fixture(scope="module")
def lake(tmp_path_factory, spark, settings):
    own = Settings(state_dir=tmp_path_factory.mktemp("silver_job"), jars_dir=settings.jars_dir)
    _bronze_lake(spark, own)
    results = run(spark, own, SOURCES, run_id="run-1")
    return own, results


def _silver_transactions(spark, settings):
    return read_delta(spark, table("silver.transactions").location(settings)).select(
        "event_id", "quantity", "unit_price_paid_usd", "transaction_date", "delivery_zone", "_ingested_at")


def test_first_promotion_standardizes_deduplicates_and_reports(spark, lake):
    settings, results = lake

    assert [(r.source, r.rows_read, r.promoted, r.quarantined, r.drift) for r in results] == [
        ("fx_rates", 4, 4, 0, 0), ("shipping_zones", 2, 2, 0, 0), ("transactions", 6, 3, 2, 1)]
    assertDataFrameEqual(_silver_transactions(spark, settings), [
        Row("e1", 1, 12.0, D3, 3, T0), Row("e2", 1, 10.0, D3, 8, T0), Row("e5", 1, 10.0, D3, None, T0)])


def test_too_many_repeated_keys_to_broadcast_sort_the_batch_to_the_same_silver(spark, settings, tmp_path,
                                                                               monkeypatch):
    own = Settings(state_dir=tmp_path, jars_dir=settings.jars_dir)
    _bronze_lake(spark, own)
    monkeypatch.setattr(silver, "BROADCAST_KEYS", 0)

    run(spark, own, SOURCES)

    assertDataFrameEqual(_silver_transactions(spark, own), [
        Row("e1", 1, 12.0, D3, 3, T0), Row("e2", 1, 10.0, D3, 8, T0), Row("e5", 1, 10.0, D3, None, T0)])


def test_the_event_tables_keep_statistics_only_on_the_columns_readers_filter_on(spark, lake):
    settings, _ = lake
    location = table("silver.transactions").location(settings)
    properties = dict(spark.sql(f"SHOW TBLPROPERTIES delta.`{location}`").collect())
    stats = spark.read.json(f"{location}/_delta_log/00000000000000000000.json").where("add IS NOT NULL").select(
        F.from_json("add.stats", "minValues map<string, string>").alias("s")).select(F.map_keys("s.minValues"))

    assert properties["delta.dataSkippingStatsColumns"] == "event_time,sku"
    assert {tuple(sorted(r[0])) for r in stats.collect()} == {("event_time", "sku")}


def test_dropped_rows_are_quarantined_with_the_names_of_the_rules_they_failed(spark, lake):
    settings, _ = lake
    quarantine = read_delta(spark, table("silver.quarantine").location(settings))

    assertDataFrameEqual(quarantine.select("source", "record_key", "failed_rules", "run_id"), [
        Row("transactions", '{"event_id":"e3"}', ["quantity_positive"], "run-1"),
        Row("transactions", '{"event_id":"e4"}', ["quantity_positive", "unit_price_present"], "run-1")])
    assert quarantine.where(F.get_json_object("record", "$.quantity") == "-1").count() == 1


def test_every_rule_result_and_the_schema_drift_are_recorded(spark, lake):
    settings, _ = lake
    results = read_delta(spark, table("ops.quality_results").location(settings)).where(
        "table = 'silver.transactions' AND NOT success")
    drift = read_delta(spark, table("ops.schema_drift").location(settings))

    assertDataFrameEqual(results.select("rule", "severity", "unexpected_count", "element_count"), [
        Row("quantity_positive", "drop", 2, 5), Row("unit_price_present", "drop", 1, 5),
        Row("zone_known", "warn", 1, 5)])
    assertDataFrameEqual(drift.select("source", "kind", "column", "rows", "first_ingest_date"), [
        Row("transactions", "new_field", "coupon_code", 1, D3)])
    assert (settings.state_dir / "data_docs" / "index.html").exists()


def _snapshot(spark, settings):
    names = [n for n in TABLES if n.split(".")[0] in ("silver", "ops")
             and delta_exists(spark, TABLES[n].location(settings))]
    return {n: (table_version(spark, TABLES[n].location(settings)),
                sorted(read_delta(spark, TABLES[n].location(settings)).collect())) for n in names}


def test_a_rerun_with_nothing_new_changes_no_table(spark, lake):
    settings, _ = lake
    before = _snapshot(spark, settings)

    with profiled(spark) as every_source:
        results = run(spark, settings, SOURCES)
    with profiled(spark) as one_source:
        run(spark, settings, SOURCES[:1])

    assert [r.rows_read for r in results] == [0, 0, 0]
    assert _snapshot(spark, settings) == before
    # A source whose bronze was not written since its promotion costs at most the read of its Delta log (for the
    # version), no pass over its rows.
    assert every_source.spark_jobs - one_source.spark_jobs <= len(SOURCES) - 1


def test_late_and_re_sent_rows_merge_into_their_event_date(spark, lake):
    settings, _ = lake
    append_bronze(spark, settings, "transactions", [
        (_line("e6", event_time="2026-08-02T23:00:00.000-04:00"), None, T1, D4),  # late: 08-03 03:00 UTC
        (_line("e7", event_time="2026-08-01T20:00:00.000+02:00"), None, T1, D4),  # late: 08-01 18:00 UTC
        (_line("e1", currency="EUR", quantity=2), None, T1, D4),  # corrected re-send: newer delivery wins
    ])

    (result,) = run(spark, settings, ["transactions"])

    assert (result.rows_read, result.promoted, result.quarantined) == (3, 3, 0)
    assertDataFrameEqual(_silver_transactions(spark, settings), [
        Row("e1", 2, 12.0, D3, 3, T1), Row("e2", 1, 10.0, D3, 8, T0), Row("e5", 1, 10.0, D3, None, T0),
        Row("e6", 1, 10.0, D3, 3, T1), Row("e7", 1, 10.0, D1, 3, T1)])
    files = read_delta(spark, table("silver.transactions").location(settings)).where("event_id = 'e7'").select(
        F.input_file_name()).first()[0]
    assert "delivery_zone=3/transaction_date=2026-08-01/" in files


def test_a_failing_fail_rule_stops_the_promotion_and_leaves_silver_unchanged(spark, settings, tmp_path, monkeypatch):
    own = Settings(state_dir=tmp_path, jars_dir=settings.jars_dir)
    append_bronze(spark, own, "fx_rates", _fx(D1, 1.10))
    run(spark, own, ["fx_rates"])
    location = table("silver.fx_rates").location(own)
    version, rows = table_version(spark, location), sorted(read_delta(spark, location).collect())
    append_bronze(spark, own, "fx_rates", [({"rate_date": D2, "currency": "EUR", "rate_to_usd": -1.1}, None, T1, D2)])

    with pytest.raises(QualityGateError, match=r"fx_rates\.rate_positive .*1 unexpected"):
        run(spark, own, ["fx_rates"])

    assert table_version(spark, location) == version
    assert sorted(read_delta(spark, location).collect()) == rows
    monkeypatch.setattr(cli, "get_settings", lambda: own)
    monkeypatch.setattr(lakehouse.spark, "get_spark", lambda *args: spark)  # the CLI imports it when it runs
    assert cli.main(["silver", "--source", "fx_rates"]) == 2
