"""Operational database benchmark: the sync of gold into PostgreSQL, and the platform's lookups under load.

Starts its own PostgreSQL (the native stack's service) on a free port in a temporary folder, and writes
bench-size gold tables with Spark: the default market's catalogue (1,000 SKUs x `scale`) with 90 daily price
books (90,000 rows), and 90 days of rate cards (8 zones x 12 weight bands x 3 service levels x 3 carriers,
77,760 rows).

- **Sync**: the wall time of `operational.sync` for each table (a new Delta version: the newest day scored
  again), against the same-run floor: the same rows read from Delta, written as CSV and `COPY`ed into an empty
  table without keys (no swap transaction, index, state or views). A re-sync of the same version (nothing to
  write) is in the details.
- **Lookups**: pgbench (PostgreSQL's own load generator, 4 clients on 2 threads, `DURATION_S` each) runs the
  platform's two reads: the price of a random SKU now (`shop.current_prices`) and a parcel's quote
  (`shop.shipping_quote`). p50 and p99 from pgbench's per-transaction log, against the same lookups on the
  same views over empty tables (a second database synced from empty gold tables), in the same run.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from bench.results import BenchRecord
from bench.streaming import _free_port
from lakehouse import delta
from lakehouse.delta_reader import DeltaReader
from lakehouse.postgres import connect
from lakehouse.schemas.scores import PRICES, SHIPPING_RATE_CARDS
from lakehouse.settings import Settings, get_settings
from lakehouse.spark import get_spark
from lakehouse.tables import table
from operational.sync import csv_bytes
from operational.sync import run as sync
from orchestration.stack import Stack

log = logging.getLogger(__name__)

SKUS, DAYS, FIRST_DAY = 1_000, 90, date(2026, 8, 1)
ZONES, BANDS_KG, LEVELS, CARRIERS = range(1, 9), (0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 25, 30, 40), \
    ("economy", "standard", "express"), ("northpost", "rapidparcel", "bluefreight")
DURATION_S, CLIENTS, THREADS = 20, 4, 2
TARGET_SYNC_S, TARGET_SYNC_RATIO, TARGET_LOOKUP_RATIO = 10.0, 2.0, 2.0
LOOKUPS = {
    "price": "\\set n random(0, {last_sku})\n"
             "SELECT price_usd FROM shop.current_prices WHERE sku = 'SKU-' || lpad(:n::text, 6, '0');\n",
    "shipping_quote": "\\set zone random(1, 8)\n\\set dg random(1, 400)\n\\set level random(0, 2)\n"
                      "SELECT carrier, expected_cost_usd FROM shop.shipping_quote(:zone, :dg / 10.0, "
                      "(ARRAY['economy', 'standard', 'express'])[:level + 1]);\n",
}


def prices(skus: int, days: int, rng: np.random.Generator) -> pd.DataFrame:
    """Daily price books: one row per SKU and day."""
    sku = np.repeat([f"SKU-{i:06d}" for i in range(skus)], days)
    cost = np.repeat(rng.uniform(5, 80, skus), days)
    price = np.round(cost * rng.uniform(1.2, 2.0, skus * days), 2)
    return pd.DataFrame({
        "sku": sku, "category": np.repeat(rng.choice(["kitchen", "apparel", "toys"], skus), days),
        "valid_from": np.tile([FIRST_DAY + timedelta(days=d) for d in range(days)], skus),
        "price_usd": price, "strategy": "optimizer", "candidate_price_usd": price + 0.3,
        "guardrails": [["PRICE_ENDING"]] * (skus * days), "rule_based_price_usd": np.round(cost * 1.5, 2),
        "current_price_usd": price, "unit_cost_usd": cost, "competitor_min_price_usd": price * 1.05,
        "expected_units": rng.uniform(0, 20, skus * days), "expected_profit_usd": rng.uniform(0, 200, skus * days),
        "model_name": "pricing", "model_version": "7", "scored_at": pd.Timestamp("2026-11-01", tz="UTC"),
    })


def rate_cards(days: int, rng: np.random.Generator) -> pd.DataFrame:
    """Daily rate cards: one row per zone, weight band, service level, carrier and day."""
    grid = pd.MultiIndex.from_product([list(ZONES), BANDS_KG, LEVELS, CARRIERS,
                                       [FIRST_DAY + timedelta(days=d) for d in range(days)]],
                                      names=["delivery_zone", "weight_band_kg", "service_level", "carrier",
                                             "valid_from"]).to_frame(index=False)
    cost = 4 + grid["weight_band_kg"] * 0.6 + grid["delivery_zone"] * 0.9 + rng.uniform(0, 2, len(grid))
    grid = grid.assign(expected_cost_usd=cost, rate_card_cost_usd=cost * 1.02, delivery_zone=grid["delivery_zone"])
    cheapest = grid.groupby(["delivery_zone", "weight_band_kg", "service_level", "valid_from"])[
        "expected_cost_usd"].transform("min")
    return grid.assign(is_cheapest=grid["expected_cost_usd"] == cheapest, model_name="shipping", model_version="4",
                       scored_at=pd.Timestamp("2026-11-01", tz="UTC"))[[f.name for f in SHIPPING_RATE_CARDS]]


def _floor_s(settings: Settings, name: str) -> float:
    """The least a sync does: read the table's latest version from Delta, write it as CSV and COPY it into an
    empty table without keys (no transaction swap, no index, no recorded state, no views)."""
    location = table(name).location(settings)
    with connect(settings, autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS bench_floor")
        connection.execute(f"CREATE TABLE bench_floor (LIKE {name})")
        connection.execute("ALTER TABLE bench_floor DROP CONSTRAINT IF EXISTS bench_floor_pkey")
        reader = DeltaReader()
        try:
            started = time.monotonic()
            rows = reader.read(location, reader.describe({name: location})[name]["version"])
            with connection.cursor().copy("COPY bench_floor FROM STDIN (FORMAT csv)") as copy:
                copy.write(csv_bytes(rows))
            seconds = time.monotonic() - started
        finally:
            reader.close()
        connection.execute("DROP TABLE bench_floor")
    return seconds


def _pgbench(settings: Settings, script: str, folder: Path) -> dict:
    """p50/p99 (ms) and transactions per second of one pgbench run of `script`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "script.sql").write_text(script)
    env = {**os.environ, "PGHOST": settings.pg_host, "PGPORT": str(settings.pg_port), "PGUSER": settings.pg_user,
           "PGPASSWORD": settings.pg_password.get_secret_value(), "PGDATABASE": settings.pg_database}
    done = subprocess.run([str(settings.postgres_bin_dir / "pgbench"), "-n", "-c", str(CLIENTS), "-j", str(THREADS),
                           "-T", str(DURATION_S), "-f", str(folder / "script.sql"), "-l",
                           f"--log-prefix={folder / 'tx'}"], env=env, capture_output=True, text=True, cwd=folder)
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed: {done.stderr.strip()[-2000:]}")
    latencies_us = np.concatenate([np.loadtxt(path, usecols=2, ndmin=1) for path in folder.glob("tx.*")])
    return {"p50_ms": round(float(np.percentile(latencies_us, 50)) / 1000, 3),
            "p99_ms": round(float(np.percentile(latencies_us, 99)) / 1000, 3),
            "transactions": int(len(latencies_us)), "tps": round(len(latencies_us) / DURATION_S)}


def run(scale: float) -> list[BenchRecord]:
    base = get_settings()
    skus = max(1, int(SKUS * scale))
    with tempfile.TemporaryDirectory(prefix="bench-operational-") as tmp:
        lake = Settings(state_dir=Path(tmp) / "lake", jars_dir=base.jars_dir, spark_ui_enabled=False,
                        catalog_enabled=False, pg_port=_free_port())
        empty = lake.model_copy(update={"state_dir": Path(tmp) / "empty", "pg_database": "bench_empty"})
        postgres = Stack(lake, only=["postgres"])
        postgres.up()
        try:
            spark = get_spark("bench-operational", lake)
            rng = np.random.default_rng(11)
            books, cards = prices(skus, DAYS, rng), rate_cards(DAYS, rng)
            for settings, price_rows, card_rows in ((lake, books, cards), (empty, books[:0], cards[:0])):
                delta.create(spark.createDataFrame(price_rows, PRICES), table("gold.prices"), settings)
                delta.create(spark.createDataFrame(card_rows, SHIPPING_RATE_CARDS), table("gold.shipping_rate_cards"),
                             settings)
            with connect(lake, autocommit=True) as connection:
                connection.execute("CREATE DATABASE bench_empty")
            sync(lake)
            sync(empty)
            # A new version of each table: the newest day scored again, as `score` does every day.
            newest = FIRST_DAY + timedelta(days=DAYS - 1)
            for name, rows, schema in (("gold.prices", books, PRICES), ("gold.shipping_rate_cards", cards,
                                                                          SHIPPING_RATE_CARDS)):
                day = rows.loc[rows["valid_from"] == newest]
                delta.replace(spark.createDataFrame(day, schema), table(name), lake, f"valid_from = DATE'{newest}'")
            spark.stop()
            timed = {r.table: r for r in sync(lake)}
            again = {r.table: round(r.seconds, 3) for r in sync(lake)}
            floors = {name: _floor_s(lake, name) for name in timed}
            lookups = {name: {"rows": _pgbench(lake, script.format(last_sku=skus - 1), Path(tmp) / f"pg-{name}"),
                              "empty": _pgbench(empty, script.format(last_sku=skus - 1),
                                                Path(tmp) / f"pg-{name}-empty")}
                       for name, script in LOOKUPS.items()}
        finally:
            postgres.down()

    details = {"skus": skus, "days": DAYS, "rows": {n: r.rows for n, r in timed.items()},
               "resync_same_version_s": again, "pgbench": {"clients": CLIENTS, "threads": THREADS,
                                                            "duration_s": DURATION_S}, "lookups": lookups}
    log.info("operational bench", extra={"details": json.dumps(details, default=str)})
    records = []
    for name, result in timed.items():
        short = name.split(".")[1]
        records.append(BenchRecord(
            f"operational_sync_{short}_s", round(result.seconds, 3), "s", "the same rows read from Delta and COPYed "
            "into a table without keys, same server", round(floors[name], 3),
            f"<= {TARGET_SYNC_S:g} s and <= {TARGET_SYNC_RATIO:g}x the floor",
            result.seconds <= TARGET_SYNC_S and result.seconds <= TARGET_SYNC_RATIO * floors[name],
            {**details, "table": name}))
    for name, measured in lookups.items():
        for quantile in ("p50", "p99"):
            value, reference = measured["rows"][f"{quantile}_ms"], measured["empty"][f"{quantile}_ms"]
            records.append(BenchRecord(
                f"operational_lookup_{name}_{quantile}", value, f"ms {quantile}",
                "the same lookup on empty tables, same server and load", reference,
                f"ratio <= {TARGET_LOOKUP_RATIO:g}", value <= TARGET_LOOKUP_RATIO * reference, details))
    return records
