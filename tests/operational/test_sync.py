"""The sync of gold tables into the operational database, against the test session's PostgreSQL."""

import math
import re
import subprocess
import threading
import time
from datetime import date

import psycopg
import pyarrow as pa
import pytest

from lakehouse.delta_reader import DeltaReader
from lakehouse.postgres import PostgresUnavailable, connect, sync_states
from lakehouse.settings import REPO_ROOT, Settings
from lakehouse.tables import synced_tables, table
from operational.sync import columns, csv_bytes, postgres_type, run
from orchestration.runner import run_pipeline
from orchestration.stack import Stack
from tests.support import prices_frame, write_prices

pytestmark = pytest.mark.integration


def _normal(value):
    if isinstance(value, float) and math.isnan(value):
        return "NaN"  # NaN != NaN: compare the marker
    return value


def gold_rows(settings: Settings, name: str) -> list[dict]:
    """The Delta table's rows (latest version), sorted by its PostgreSQL key."""
    target, reader = table(name), DeltaReader()
    try:
        rows = reader.read(target.location(settings), reader.versions({name: target.location(settings)})[name])
    finally:
        reader.close()
    return sorted(({k: _normal(v) for k, v in row.items()} for row in rows.to_pylist()),
                  key=lambda row: tuple(row[k] for k in target.postgres_key))


def postgres_rows(settings: Settings, name: str) -> list[dict]:
    target = table(name)
    with connect(settings) as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {name} ORDER BY {', '.join(target.postgres_key)}")
        names = [column.name for column in cursor.description]
        return [{k: _normal(v) for k, v in zip(names, row, strict=True)} for row in cursor.fetchall()]


@pytest.fixture
def own_lake(stack, tmp_path, settings) -> Settings:
    return Settings(state_dir=tmp_path, jars_dir=settings.jars_dir)


def test_arrow_types_map_to_postgres_types_and_the_key_is_not_null():
    schema = pa.schema([("sku", pa.string()), ("day", pa.date32()), ("n", pa.int32()), ("big", pa.int64()),
                        ("x", pa.float64()), ("ok", pa.bool_()), ("at", pa.timestamp("us", tz="UTC")),
                        ("naive", pa.timestamp("us")), ("tags", pa.list_(pa.string())),
                        ("amount", pa.decimal128(12, 2))])
    assert columns(schema, ("sku", "day")) == [
        ("sku", "text NOT NULL"), ("day", "date NOT NULL"), ("n", "integer"), ("big", "bigint"),
        ("x", "double precision"), ("ok", "boolean"), ("at", "timestamptz"), ("naive", "timestamp"),
        ("tags", "text[]"), ("amount", "numeric(12, 2)")]
    with pytest.raises(TypeError, match="no PostgreSQL type for the Arrow type"):
        postgres_type(pa.struct([("a", pa.int32())]))
    with pytest.raises(ValueError, match=r"primary key columns \['sku_id'\] are not in the table"):
        columns(schema, ("sku_id",))


def test_csv_encoding_quotes_values_leaves_nulls_bare_and_writes_array_literals():
    rows = pa.table({"s": ["a", "", None], "x": [1.5, math.nan, None],
                     "tags": pa.array([['q"t', "b\\s"], [], None], pa.list_(pa.string()))})
    assert csv_bytes(rows).decode().splitlines() == [
        '"a","1.5","{""q\\""t"",""b\\\\s""}"', '"","nan","{}"', ",,"]


def test_the_synced_tables_equal_gold_and_a_second_sync_writes_nothing(simulated_lake):
    lake, _ = simulated_lake
    first = run(lake)  # writes both, unless an earlier test synced this lake already
    assert [r.table for r in first] == ["gold.prices", "gold.shipping_rate_cards"]
    for name in ("gold.prices", "gold.shipping_rate_cards"):
        assert postgres_rows(lake, name) == gold_rows(lake, name)

    with connect(lake) as connection:
        written_before = connection.execute(
            "SELECT sum(n_tup_ins + n_tup_del) FROM pg_stat_user_tables WHERE schemaname = 'gold'").fetchone()
        states_before = connection.execute("SELECT * FROM lakehouse.synced_tables ORDER BY 1").fetchall()
    again = run(lake)
    assert [(r.table, r.version, r.rows, r.synced) for r in again] == [
        (r.table, r.version, 0, False) for r in first]
    time.sleep(0.6)  # statistics reach pg_stat_user_tables within PostgreSQL's stats flush interval (0.5 s)
    with connect(lake) as connection:
        assert connection.execute(
            "SELECT sum(n_tup_ins + n_tup_del) FROM pg_stat_user_tables WHERE schemaname = 'gold'").fetchone() == \
            written_before
        assert connection.execute("SELECT * FROM lakehouse.synced_tables ORDER BY 1").fetchall() == states_before

    reader = DeltaReader()
    try:
        states = sync_states(lake, reader)
    finally:
        reader.close()
    assert {name: (s["synced_version"] == s["gold_version"], s["versions_behind"], s["lag_s"])
            for name, s in states.items()} == {t.name: (True, 0, 0.0) for t in synced_tables()}


def test_the_platforms_views_answer_its_lookups(simulated_lake):
    lake, _ = simulated_lake
    run(lake)
    prices = [row for row in gold_rows(lake, "gold.prices") if row["valid_from"] <= date.today()]
    newest = {}
    for row in prices:  # sorted by sku, valid_from: the last row per SKU wins
        newest[row["sku"]] = row
    sku = sorted(newest)[0]
    cards = gold_rows(lake, "gold.shipping_rate_cards")
    day = max(row["valid_from"] for row in cards)
    zone, level = cards[0]["delivery_zone"], cards[0]["service_level"]
    bands = sorted({r["weight_band_kg"] for r in cards if (r["delivery_zone"], r["service_level"]) == (zone, level)})
    weight = bands[0] + 0.01  # just over the first band: the second band's rates
    expected = sorted((r for r in cards if (r["delivery_zone"], r["service_level"], r["weight_band_kg"],
                                            r["valid_from"]) == (zone, level, bands[1], day)),
                      key=lambda r: r["expected_cost_usd"])
    with connect(lake) as connection:
        assert connection.execute("SELECT price_usd, valid_from FROM shop.current_prices WHERE sku = %s",
                                  (sku,)).fetchall() == [(newest[sku]["price_usd"], newest[sku]["valid_from"])]
        assert connection.execute("SELECT count(*) FROM shop.current_prices").fetchone() == (len(newest),)
        quote = connection.execute("SELECT carrier, expected_cost_usd FROM shop.shipping_quote(%s, %s, %s)",
                                   (zone, weight, level)).fetchall()
    assert quote == [(r["carrier"], r["expected_cost_usd"]) for r in expected]


def test_a_reader_during_syncs_sees_the_old_table_or_the_new_never_a_mix(spark, own_lake):
    versions = {1.0: 6_000, 2.0: 9_000, 3.0: 3_000}  # price -> SKUs of each gold version
    write_prices(spark, own_lake, prices_frame(versions[1.0], 1.0))
    run(own_lake)
    seen, stop = set(), threading.Event()

    def read_in_a_loop() -> None:
        with connect(own_lake, autocommit=True) as connection:
            while not stop.is_set():
                seen.add(connection.execute("SELECT count(*), min(price_usd), max(price_usd) FROM gold.prices"
                                            ).fetchone())

    reader = threading.Thread(target=read_in_a_loop)
    reader.start()
    try:
        for price in (2.0, 3.0):
            write_prices(spark, own_lake, prices_frame(versions[price], price))
            run(own_lake)
            time.sleep(0.2)
    finally:
        stop.set()
        reader.join()
    assert seen <= {(skus, price, price) for price, skus in versions.items()}
    assert {price for _, price, _ in seen} == {1.0, 2.0, 3.0}
    assert postgres_rows(own_lake, "gold.prices") == gold_rows(own_lake, "gold.prices")


def _waiting_on(connection, relation: str) -> bool:
    return connection.execute("SELECT count(*) > 0 FROM pg_locks WHERE NOT granted AND relation = to_regclass(%s)",
                              (relation,)).fetchone()[0]


def test_postgres_stopped_mid_sync_fails_the_step_and_its_retry_catches_up(spark, own_lake, settings):
    write_prices(spark, own_lake, prices_frame(500, 1.0))
    run(own_lake)
    write_prices(spark, own_lake, prices_frame(800, 2.0))
    gold_before = gold_rows(own_lake, "gold.prices")
    postgres = Stack(settings, only=["postgres"])
    outcome = {}

    def sync_step() -> None:
        outcome["summary"] = run_pipeline(None, own_lake, ["sync"], retries=1, delay_s=8)

    # A transaction holding the table makes the sync wait inside its own transaction: then PostgreSQL stops.
    blocker = connect(own_lake)
    blocker.execute("LOCK TABLE gold.prices IN ACCESS EXCLUSIVE MODE")
    syncing = threading.Thread(target=sync_step)
    syncing.start()
    with connect(own_lake, autocommit=True) as watcher:
        deadline = time.monotonic() + 30
        while not _waiting_on(watcher, "gold.prices") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _waiting_on(watcher, "gold.prices")
    postgres.down()
    with pytest.raises(psycopg.OperationalError):
        blocker.execute("SELECT 1")  # the server's shutdown ended this session too
    blocker.close()
    with pytest.raises(PostgresUnavailable, match="did not accept a connection"):
        connect(own_lake, timeout_s=1)
    postgres.up()  # within the step's retry delay
    syncing.join(60)
    assert outcome["summary"] == {"sync": "gold.prices v1: 800 rows"}
    assert postgres_rows(own_lake, "gold.prices") == gold_rows(own_lake, "gold.prices") == gold_before
    [summary_file] = (own_lake.state_dir / "pipeline_runs").glob("*.json")
    assert '"attempts": 2' in summary_file.read_text()


def test_the_readme_psql_line_runs(simulated_lake, settings):
    lake, _ = simulated_lake
    run(lake)
    [line] = [line for line in (REPO_ROOT / "README.md").read_text().splitlines() if re.match(r"\s*PGPASSWORD=", line)]
    done = subprocess.run(["bash", "-c", line.strip()], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "PGPORT": str(settings.pg_port)})
    assert done.returncode == 0, done.stderr
    newest = {}
    for row in gold_rows(lake, "gold.prices"):
        if row["valid_from"] <= date.today():
            newest[row["sku"]] = row
    expected = [f"{sku}|{newest[sku]['price_usd']}" for sku in sorted(newest)[:5]]
    assert done.stdout.splitlines() == expected
