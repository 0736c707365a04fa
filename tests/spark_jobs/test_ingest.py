"""The batch ingestion job on a small hand-written landing zone: exact rows, reasons and table versions."""

import base64
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehouse.delta import read_delta, table_version
from lakehouse.settings import Settings
from lakehouse.tables import table
from spark_jobs.ingest import SourceResult, run

SOURCES = ["market_prices", "products", "transactions"]


def _write(landing: Path, source: str, day: str, name: str, text: str) -> Path:
    folder = landing / source / f"ingest_date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def _order_line(event_id: str, sku: str, quantity, **extra) -> str:
    return json.dumps({"event_id": event_id, "order_id": f"o-{event_id}", "line_number": 1, "sku": sku,
                       "quantity": quantity, "event_time": "2026-08-01T10:00:00-05:00", **extra})


@pytest.fixture
def lake(tmp_path, settings):
    landing = tmp_path / "landing"
    _write(landing, "transactions", "2026-08-01", "part-00000.json", "\n".join([
        _order_line("e1", "SKU-000001", 2),
        _order_line("e2", "sku000002", 1),
        _order_line("e3", "SKU-000003", "many"),
        '{"event_id": "e4", "sku": "SKU-0',
    ]) + "\n")
    _write(landing, "transactions", "2026-08-02", "part-00000.json",
           _order_line("e5", "SKU-000001", 1, coupon_code="SAVE5") + "\n")
    _write(landing, "products", "2026-08-01", "part-00000.csv",
           "sku,product_name,category,weight,weight_unit,list_price,launch_date\n"
           "SKU-000001,Kettle,kitchen,1200,g,39.99,2026-01-15\n"
           "SKU-000002,\"Mug, large\",kitchen,0.4,kg,12.5,2026-02-01\n"
           "SKU-000003,Broken line,kitchen\n")
    _write(landing, "products", "2026-08-02", "part-00000.csv",
           "sku,product_name,category,weight,weight_unit,list_price,launch_date,color\n"
           "SKU-000004,Teapot,kitchen,0.9,kg,24.0,2026-08-02,red\n")
    folder = landing / "market_prices" / "ingest_date=2026-08-01"
    folder.mkdir(parents=True)
    observed_at = pa.array([datetime(2026, 8, 1, 8, tzinfo=UTC)], pa.timestamp("us", "UTC"))
    pq.write_table(pa.table({"sku": ["SKU-000001"], "competitor": ["acme"], "price": [37.5], "currency": ["USD"],
                             "observed_at": observed_at}), folder / "part-00000.parquet")
    own = Settings(state_dir=tmp_path / "state", jars_dir=settings.jars_dir)
    return own, landing


def _summary(results: list[SourceResult]) -> list[tuple[str, int, int, int]]:
    return [(r.source, r.dates, r.rows, r.quarantined) for r in results]


def _versions(spark, settings):
    names = [f"bronze.{s}" for s in SOURCES] + ["bronze.quarantine", "ops.ingest_log"]
    return {name: table_version(spark, table(name).location(settings)) for name in names}


def test_first_run_lands_good_records_and_quarantines_bad_ones(spark, lake):
    settings, landing = lake

    results = run(spark, settings, SOURCES, landing_dir=landing)

    assert _summary(results) == [("market_prices", 1, 1, 0), ("products", 2, 3, 1), ("transactions", 2, 3, 2)]
    bronze = read_delta(spark, table("bronze.transactions").location(settings))
    assertDataFrameEqual(bronze.select("event_id", "sku", "quantity", "event_time", "_rescued_data", "ingest_date",
                                       "ingest_year", "ingest_month", "ingest_day"), [
        Row("e1", "SKU-000001", 2, "2026-08-01T10:00:00-05:00", None, date(2026, 8, 1), 2026, 8, 1),
        Row("e2", "sku000002", 1, "2026-08-01T10:00:00-05:00", None, date(2026, 8, 1), 2026, 8, 1),
        Row("e5", "SKU-000001", 1, "2026-08-01T10:00:00-05:00", '{"coupon_code":"SAVE5"}', date(2026, 8, 2),
            2026, 8, 2),
    ])
    assert bronze.where(~F.col("_source_file").endswith("part-00000.json")).count() == 0

    products = read_delta(spark, table("bronze.products").location(settings))
    assertDataFrameEqual(products.select("sku", "product_name", "weight", "weight_unit", "launch_date",
                                         "_rescued_data"), [
        Row("SKU-000001", "Kettle", 1200.0, "g", date(2026, 1, 15), None),
        Row("SKU-000002", "Mug, large", 0.4, "kg", date(2026, 2, 1), None),
        Row("SKU-000004", "Teapot", 0.9, "kg", date(2026, 8, 2), '{"color":"red"}'),
    ])
    market = read_delta(spark, table("bronze.market_prices").location(settings))
    assert [tuple(r) for r in market.select("sku", "competitor", "price", "observed_at").collect()] == [
        ("SKU-000001", "acme", 37.5, datetime(2026, 8, 1, 8))]

    quarantine = read_delta(spark, table("bronze.quarantine").location(settings))
    assertDataFrameEqual(quarantine.select("source", "raw", "reason", "ingest_date"), [
        Row("products", "SKU-000003,Broken line,kitchen", "malformed_csv: wrong number of fields", date(2026, 8, 1)),
        Row("transactions", _order_line("e3", "SKU-000003", "many"), "type_mismatch: quantity", date(2026, 8, 1)),
        Row("transactions", '{"event_id": "e4", "sku": "SKU-0', "malformed_json", date(2026, 8, 1)),
    ])
    ingest_log = read_delta(spark, table("ops.ingest_log").location(settings))
    files = F.regexp_replace("files", r":\d+", "")  # names without sizes
    assertDataFrameEqual(ingest_log.select("source", "ingest_date", files.alias("files"), "rows", "quarantined"), [
        Row("market_prices", date(2026, 8, 1), "part-00000.parquet", 1, 0),
        Row("products", date(2026, 8, 1), "part-00000.csv", 2, 1),
        Row("products", date(2026, 8, 2), "part-00000.csv", 1, 0),
        Row("transactions", date(2026, 8, 1), "part-00000.json", 2, 2),
        Row("transactions", date(2026, 8, 2), "part-00000.json", 1, 0),
    ])


def test_rerun_adds_nothing_and_a_new_day_appends_only_that_day(spark, lake):
    settings, landing = lake
    run(spark, settings, SOURCES, landing_dir=landing)
    before = _versions(spark, settings)
    rows_before = read_delta(spark, table("bronze.transactions").location(settings))
    snapshot = rows_before.collect()

    assert run(spark, settings, SOURCES, landing_dir=landing) == []
    assert _versions(spark, settings) == before

    _write(landing, "transactions", "2026-08-03", "part-00000.json", _order_line("e6", "SKU-000002", 3) + "\n")
    assert _summary(run(spark, settings, SOURCES, landing_dir=landing)) == [("transactions", 1, 1, 0)]
    after = _versions(spark, settings)
    assert after["bronze.transactions"] == before["bronze.transactions"] + 1
    assert after["bronze.products"] == before["bronze.products"]
    bronze = read_delta(spark, table("bronze.transactions").location(settings))
    assert sorted(r.event_id for r in bronze.collect()) == ["e1", "e2", "e5", "e6"]
    assertDataFrameEqual(bronze.where("ingest_date < '2026-08-03'"), snapshot)


def test_a_file_added_to_an_ingested_date_reingests_that_date_without_duplicates(spark, lake):
    settings, landing = lake
    run(spark, settings, ["transactions"], landing_dir=landing)
    _write(landing, "transactions", "2026-08-01", "part-00001.json", _order_line("e7", "SKU-000009", 1) + "\n")

    assert _summary(run(spark, settings, ["transactions"], landing_dir=landing)) == [("transactions", 1, 3, 2)]

    bronze = read_delta(spark, table("bronze.transactions").location(settings))
    assert sorted(r.event_id for r in bronze.collect()) == ["e1", "e2", "e5", "e7"]
    quarantine = read_delta(spark, table("bronze.quarantine").location(settings))
    assert quarantine.count() == 2


def test_a_file_resent_with_other_content_reingests_that_date(spark, lake):
    settings, landing = lake
    run(spark, settings, ["transactions"], landing_dir=landing)
    _write(landing, "transactions", "2026-08-02", "part-00000.json",
           _order_line("e5", "SKU-000001", 1) + "\n" + _order_line("e8", "SKU-000002", 2) + "\n")

    assert _summary(run(spark, settings, ["transactions"], landing_dir=landing)) == [("transactions", 1, 2, 0)]
    bronze = read_delta(spark, table("bronze.transactions").location(settings))
    assert sorted(r.event_id for r in bronze.collect()) == ["e1", "e2", "e5", "e8"]


def test_only_date_limits_the_run(spark, lake):
    settings, landing = lake
    results = run(spark, settings, ["transactions"], only_date=date(2026, 8, 2), landing_dir=landing)
    assert _summary(results) == [("transactions", 1, 1, 0)]


def _arrow_readers_read(location: str) -> int:
    """Rows of a Delta table as delta-rs (into pandas: every string decoded) and DuckDB (every column of its
    Parquet files) read it; both must agree."""
    import duckdb
    from deltalake import DeltaTable

    delta = DeltaTable(location)
    rows = len(delta.to_pandas())
    with duckdb.connect() as con:
        assert len(con.sql(f"SELECT * FROM read_parquet({delta.file_uris()!r})").fetchall()) == rows
    return rows


def test_a_landing_file_of_hostile_bytes_is_quarantined_losslessly_and_every_table_stays_readable(spark, lake):
    settings, landing = lake
    hostile = [b"\xff\xfe\x00\x81garbage", '{"event_id": "\u00e9'.encode()[:-1], b'{"event_id": "a\x00b"}',
               b"[1, 2]", b"[" * 3000 + b"]" * 3000, b'{"event_id": "e\xc3\x28", "quantity": 1}', b"x" * 1_000_000]
    folder = landing / "transactions" / "ingest_date=2026-08-03"
    folder.mkdir(parents=True)
    (folder / "part-00000.json").write_bytes(b"\n".join([*hostile, _order_line("e9", "SKU-000001", 1).encode()])
                                             + b"\n")

    run(spark, settings, ["transactions"], landing_dir=landing)

    quarantine = read_delta(spark, table("bronze.quarantine").location(settings)).where(
        F.col("ingest_date") == date(2026, 8, 3))
    kept = {(r.raw, r.raw_encoding, r.reason) for r in quarantine.collect()}
    assert kept == {(base64.b64encode(line).decode(), "base64", "not_utf8") for line in hostile[:2] + hostile[5:6]} | {
        (hostile[2].decode(), None, "malformed_json"), ("[1, 2]", None, "malformed_json"),
        (hostile[4].decode(), None, "malformed_json"), (hostile[6].decode(), None, "malformed_json")}
    for name in ("bronze.quarantine", "bronze.transactions"):
        assert _arrow_readers_read(table(name).location(settings)) == read_delta(
            spark, table(name).location(settings)).count()
    bronze = read_delta(spark, table("bronze.transactions").location(settings)).where(
        F.col("ingest_date") == date(2026, 8, 3))
    assert [r.event_id for r in bronze.collect()] == ["e9"]  # nothing lost: 7 quarantined + 1 landed = 8 lines


def test_a_malformed_rate_sheet_is_quarantined_whole_and_a_valid_one_lands(spark, tmp_path, settings):
    from simulator.carriers import true_rate_cards
    from simulator.config import SimConfig
    from simulator.sources import _rate_card_rows

    config = SimConfig()
    first, second = true_rate_cards(config)
    landing = tmp_path / "landing"
    good = _rate_card_rows(first, date(2026, 8, 1))
    _write(landing, "shipping_rates", "2026-08-01", "part-00000.csv", good.to_csv(index=False))
    # The next sheet: zone 8 of northpost's standard card left out, and one line cut short.
    bad = _rate_card_rows(second, date(2026, 9, 15))
    bad = bad.loc[~((bad["carrier"] == "northpost") & (bad["service_level"] == "standard") & (bad["zone"] == 8))]
    text = bad.to_csv(index=False).splitlines()
    text[5] = ",".join(text[5].split(",")[:4])
    _write(landing, "shipping_rates", "2026-09-15", "part-00000.csv", "\n".join(text) + "\n")
    own = Settings(state_dir=tmp_path / "state", jars_dir=settings.jars_dir)

    results = run(spark, own, ["shipping_rates"], landing_dir=landing)

    assert _summary(results) == [("shipping_rates", 2, len(good), len(bad))]
    bronze = read_delta(spark, table("bronze.shipping_rates").location(own))
    assert [tuple(r) for r in bronze.groupBy("effective_from").count().collect()] == [(date(2026, 8, 1), len(good))]
    quarantine = read_delta(spark, table("bronze.quarantine").location(own))
    reasons = {r.reason: r["count"] for r in quarantine.groupBy("reason").count().collect()}
    refused = ("file_refused: unreadable_rows: 1; zones_missing: northpost/standard: 8; "
               "weight_breaks_differ: northpost/standard")
    assert reasons == {refused: len(bad) - 1, f"{refused}; malformed_csv: wrong number of fields": 1}
