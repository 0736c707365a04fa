"""The silver+gold benchmark compares equal work: on a tiny simulated market, the DuckDB transforms give
the same silver row counts and the same gold tables (whole frames, sorted) as the project's Spark jobs.

The full benchmark (bench size, minutes) is not run here: `make bench BENCH_ARGS='--only silver_gold'`.
"""

import json

import pytest
from pyspark.testing import assertDataFrameEqual

from bench import silver_gold_duckdb as duck
from bench.silver_gold import (
    GOLD_TABLES,
    SOURCES,
    bronze_locations,
    compare_outputs,
    copy_bronze,
    copy_partitions,
    profile_differences,
    records,
    table_profile,
)
from lakehouse.delta import read_delta
from lakehouse.quality import BETWEEN, IN_SET, MATCHES, NOT_NULL, Rule, Severity
from lakehouse.schemas.gold import GOLD_SCHEMAS
from lakehouse.settings import Settings
from lakehouse.tables import table
from simulator.config import SimConfig
from simulator.generate import generate
from spark_jobs import gold, ingest, silver
from spark_jobs.silver import bronze_columns

TINY = dict(skus=100, days=4, scale=0.1)
# Ingest, silver and gold of nine sources with their Great Expectations suites: minutes on a loaded machine.
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def both_sides(spark, settings, tmp_path_factory):
    """A tiny market ingested into bronze, then silver and gold by the Spark jobs and by DuckDB."""
    own = Settings(state_dir=tmp_path_factory.mktemp("silver_gold_bench"), jars_dir=settings.jars_dir)
    generate(SimConfig(seed=11, **TINY), own.landing_dir, own.truth_dir)
    ingest.run(spark, own, list(SOURCES))
    silver.run(spark, own)
    gold.run(spark, own, full_refresh=True)
    con = duck.connect()
    result = duck.run(con, bronze_locations(own))
    yield own, con, result
    con.close()


@pytest.mark.parametrize("name", GOLD_TABLES)
def test_duckdb_builds_the_same_gold_table_as_spark(spark, both_sides, name):
    own, con, _ = both_sides
    expected = read_delta(spark, table(f"gold.{name}").location(own))
    schema = GOLD_SCHEMAS[name]
    rows = con.execute(f"SELECT {', '.join(schema.fieldNames())} FROM gold_{name}").fetchall()
    actual = spark.createDataFrame(rows, schema)
    assert expected.count() > 0
    assertDataFrameEqual(actual, expected.select(*schema.fieldNames()), rtol=1e-9)


def test_duckdb_keeps_and_quarantines_the_same_silver_rows_as_spark(spark, both_sides):
    own, con, result = both_sides
    for source in SOURCES:
        spark_rows = read_delta(spark, table(f"silver.{source}").location(own)).count()
        assert result["silver"][source]["rows"] == spark_rows, source
    quarantined = {r.source: r["count"] for r in read_delta(spark, table("silver.quarantine").location(own))
                   .groupBy("source").count().collect()}
    assert {s: r["quarantined"] for s, r in result["silver"].items() if r["quarantined"]} == quarantined


def test_the_comparison_of_the_outputs_finds_them_equal(both_sides):
    own, con, _ = both_sides
    compared = compare_outputs(con, own.lake_root)
    assert sorted(compared) == sorted([*(f"silver.{s}" for s in SOURCES), *(f"gold.{g}" for g in GOLD_TABLES)])
    assert {name: c["differences"] for name, c in compared.items() if c["differences"]} == {}


def test_both_bare_copies_hold_every_bronze_row_partitioned_by_ingest_date_where_silver_is(spark, both_sides,
                                                                                           tmp_path):
    own, con, _ = both_sides
    copy_bronze(spark, own, tmp_path / "spark")
    duck.copy_bronze(con, tmp_path / "duckdb", {s: copy_partitions(s) for s in SOURCES})
    for source in SOURCES:
        bronze = bronze_columns(read_delta(spark, table(f"bronze.{source}").location(own)), source)
        assertDataFrameEqual(read_delta(spark, str(tmp_path / "spark" / source)), bronze)
        assert spark.read.parquet(str(tmp_path / "duckdb" / source)).count() == bronze.count(), source
    assert [copy_partitions(s) for s in ("clickstream", "transactions", "products", "customers")] == [
        ("ingest_date",), ("ingest_date",), ("ingest_date",), ()]
    clickstream = read_delta(spark, table("bronze.clickstream").location(own))
    days = {f"ingest_date={r.ingest_date}" for r in clickstream.select("ingest_date").distinct().collect()}
    assert {p.name for p in (tmp_path / "duckdb" / "clickstream").iterdir()} == days
    assert {p.name for p in (tmp_path / "spark" / "clickstream").iterdir()} == days | {"_delta_log"}


def test_active_files_replay_adds_and_removes(tmp_path):
    log = tmp_path / "_delta_log"
    log.mkdir()
    (log / f"{0:020d}.json").write_text("\n".join(json.dumps(a) for a in [
        {"protocol": {}}, {"add": {"path": "a.parquet"}}, {"add": {"path": "day%3D1/b.parquet"}}]))
    (log / f"{1:020d}.json").write_text("\n".join(json.dumps(a) for a in [
        {"remove": {"path": "a.parquet"}}, {"add": {"path": "c.parquet"}}]))
    assert duck.active_files(tmp_path) == [str(tmp_path / "c.parquet"), str(tmp_path / "day=1" / "b.parquet")]
    with pytest.raises(FileNotFoundError, match="not a Delta table"):
        duck.active_files(tmp_path / "nothing")


def test_rules_count_and_split_rows_as_the_spark_predicates_do():
    con = duck.connect()
    con.execute("CREATE TABLE batch AS SELECT * FROM (VALUES ('k1', 5.0::DOUBLE, 'USD'), ('k2', -1.0, 'USD'), "
                "('k3', NULL, 'XXX'), ('k4', 0.0, NULL)) t(key, price, currency)")
    con.execute("CREATE TABLE quarantine (source VARCHAR, record_key VARCHAR, failed_rules VARCHAR[], record VARCHAR)")
    rules = (Rule("price_present", Severity.DROP, NOT_NULL, {"column": "price"}),
             Rule("price_positive", Severity.DROP, BETWEEN, {"column": "price", "min_value": 0, "strict_min": True}),
             Rule("currency_known", Severity.WARN, IN_SET, {"column": "currency", "value_set": ["USD"]}),
             Rule("key_shape", Severity.FAIL, MATCHES, {"column": "key", "regex": r"^k\d$"}))
    result = duck.gate_and_split(con, "batch", "kept", rules, ("key",), "quarantine", "prices",
                                 ("key", "price", "currency"))
    # Like Great Expectations, column-map rules other than not-null ignore nulls (k3 fails only price_present).
    assert result == {"rows": 1, "quarantined": 3, "rules": {
        "price_present": 1, "price_positive": 2, "currency_known": 1, "key_shape": 0}}
    assert con.execute("SELECT * FROM kept").fetchall() == [("k1", 5.0, "USD")]
    assert con.execute("SELECT record_key, failed_rules FROM quarantine ORDER BY record_key").fetchall() == [
        ('{"key":"k2"}', ["price_positive"]), ('{"key":"k3"}', ["price_present"]),
        ('{"key":"k4"}', ["price_positive"])]
    failing = (Rule("key_shape", Severity.FAIL, MATCHES, {"column": "key", "regex": r"^x"}),)
    with pytest.raises(duck.QualityGateError, match=r"key_shape"):
        duck.gate_and_split(con, "batch", "kept2", failing, ("key",), "quarantine", "prices", ("key",))


def test_standardization_expressions():
    con = duck.connect()
    skus = con.execute(f"SELECT {duck.canonical_sku('s')} FROM (VALUES ('sku000123'), ('SKU_123'), (' 000123 '), "
                       "('Sku-000123'), ('ABC'), (NULL)) t(s)").fetchall()
    assert [s for (s,) in skus] == ["SKU-000123"] * 4 + [None, None]
    zips = con.execute(f"SELECT {duck.zip5('z')} FROM (VALUES ('02139'), ('2139'), (' 02139-1234'), ('x')) t(z)")
    assert [z for (z,) in zips.fetchall()] == ["02139", "02139", "02139", None]
    times = con.execute(f"SELECT CAST({duck.utc_timestamp('t')} AS VARCHAR) FROM (VALUES "
                        "('2026-08-01T10:00:00-05:00'), ('2026-08-01T23:30:00+00:00'), ('garbage')) v(t)").fetchall()
    assert [t for (t,) in times] == ["2026-08-01 15:00:00", "2026-08-01 23:30:00", None]
    kg = con.execute(f"SELECT {duck.to_kg('w', 'u')} FROM "
                     "(VALUES (500.0::DOUBLE, 'g'), (2.0, ' LB '), (1.0, 'st')) t(w, u)")
    assert [w for (w,) in kg.fetchall()] == [0.5, 2.0 * 0.45359237, None]


def test_profiles_differ_on_rows_counts_and_sums_beyond_the_tolerance():
    con = duck.connect()
    con.execute("CREATE TABLE a AS SELECT * FROM (VALUES (1, 0.1::DOUBLE, 'x'), (2, NULL, 'y')) t(n, v, s)")
    profile = table_profile(con, "a")
    assert profile == {"rows": 2, "columns": {"n": {"non_null": 2, "sum": 3.0}, "v": {"non_null": 1, "sum": 0.1},
                                              "s": {"non_null": 2}}}
    assert profile_differences(profile, profile) == []
    nudged = {"rows": 2, "columns": {**profile["columns"], "v": {"non_null": 1, "sum": 0.1 * (1 + 1e-12)}}}
    assert profile_differences(profile, nudged) == []
    other = {"rows": 2, "columns": {**profile["columns"], "v": {"non_null": 2, "sum": 0.1}}}
    assert profile_differences(profile, other) == ["v: non-null 1 != 2"]
    assert profile_differences(profile, {"rows": 3, "columns": {}}) == ["rows 2 != 3"]


def _timings(**overrides) -> dict:
    return {"timings": {"session_start": 10.0, "trivial_silver": 20.0, "trivial_gold": 10.0, "silver": 100.0,
                        "gold": 50.0, "copy_trivial": 5.0, "copy": 45.0, **overrides}}


DUCK = {"seconds": {"silver": 40.0, "gold": 20.0, "copy": 20.0}}


def test_the_record_compares_spark_without_its_start_up_with_its_bare_copy():
    equal = {"gold.pricing_daily": {"differences": []}}
    (floor,) = records(_timings(), DUCK, equal, {"scale": 12})
    assert (floor.name, floor.value, floor.reference_value, floor.ratio, floor.meets_target) == (
        "silver_gold_floor", 120.0, 40.0, 3.0, False)
    assert floor.details["spark_startup_s"] == 40.0 and floor.details["outputs_equal"] is True
    assert floor.details["spark_minus_startup_vs_duckdb"] == 2.0 and floor.details["spark_copy_vs_duckdb_copy"] == 2.0
    (fast,) = records(_timings(silver=50.0, gold=40.0, copy=65.0), DUCK, equal, {})
    assert (fast.value, fast.reference_value, fast.meets_target) == (60.0, 60.0, True)
    differing = {"gold.pricing_daily": {"differences": ["rows 1 != 2"]}}
    assert records(_timings(silver=50.0, gold=40.0, copy=65.0), DUCK, differing, {})[0].meets_target is False
