"""The silver and gold transforms of `transforms.standardize`, `spark_jobs.gold` and `features/`, in DuckDB SQL.

The reference side of the silver+gold benchmark (bench/silver_gold.py): the same work on the same bronze
Delta tables, so that the ratio compares equal work. Bronze is read as the Parquet files of the Delta
log's active add actions (DuckDB's delta extension is downloaded at run time, which this machine cannot).

Per source, in `PROMOTION_ORDER`: standardize (canonical SKU, kg/cm, USD at the fx rate in force, UTC,
zip5 and delivery zone), keep the latest delivery per natural key, count every quality rule's unexpected
rows (the checks Great Expectations runs in the Spark job; a failed `fail` rule raises), split by the
`drop` rules into `silver_<source>` and `silver_quarantine`. Gold: `gold_pricing_daily`,
`gold_pricing_features`, `gold_shipping_features` with their suites, split the same way into
`gold_<table>` and `gold_quarantine`. Rules, schemas and keys are the project's own (`expectations.suites`,
`lakehouse.schemas`); only the expressions are restated, in SQL. Not done here: the Spark job's
bookkeeping (watermarks, ops tables, schema drift records, Data Docs) and its Delta writes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import duckdb
from pyspark.sql.types import DataType, StructType

from expectations.suites import GOLD_SUITES
from lakehouse.quality import (
    A_GREATER_THAN_B,
    BETWEEN,
    COMPOUND_UNIQUE,
    IN_SET,
    MATCHES,
    NOT_NULL,
    UNIQUE,
    Rule,
    Severity,
)
from lakehouse.schemas.gold import CONVERSION_WINDOWS, GOLD_KEYS, GOLD_SCHEMAS
from lakehouse.sources import PROMOTION_ORDER, SOURCES, SUITES

# The bronze lineage columns silver keeps (transforms.records.LINEAGE_COLUMNS plus `_rescued_data`).
BRONZE_EXTRA = ("_rescued_data", "_source_file", "_batch_id", "_ingested_at", "ingest_date")
_DUCK_TYPES = {"string": "VARCHAR", "double": "DOUBLE", "int": "INTEGER", "bigint": "BIGINT", "date": "DATE",
               "timestamp": "TIMESTAMP", "boolean": "BOOLEAN", "array<string>": "VARCHAR[]"}
_SKU_PATTERN = r"(?i)^\s*(?:sku[-_]?)?(\d{1,6})\s*$"
_ZIP_PATTERN = r"^\s*(\d{1,5})(?:-\d{4})?\s*$"
REFERENCE_DAYS, MOMENTUM_DAYS = 28, 7  # as features.pricing


class QualityGateError(RuntimeError):
    """A `fail` rule found unexpected rows (as `expectations.gate.QualityGateError` in the Spark job)."""


def duck_type(spark_type: DataType) -> str:
    return _DUCK_TYPES[spark_type.simpleString()]


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


# ---------------------------------------------------------------------------------------------------
# Bronze: the Delta log's active files


def active_files(location: str | Path) -> list[str]:
    """The data files of a Delta table's latest version: add actions not removed since, replayed from the
    last checkpoint (if any) and the JSON commits after it."""
    log_dir = Path(location) / "_delta_log"
    if not log_dir.is_dir():
        raise FileNotFoundError(f"{location} is not a Delta table (no _delta_log)")
    active: set[str] = set()
    start = -1
    last_checkpoint = log_dir / "_last_checkpoint"
    if last_checkpoint.exists():
        start = json.loads(last_checkpoint.read_text())["version"]
        parts = sorted(log_dir.glob(f"{start:020d}.checkpoint*.parquet"))
        rows = duckdb.sql(f"SELECT add.path FROM read_parquet({[str(p) for p in parts]}) WHERE add IS NOT NULL")
        active = {path for (path,) in rows.fetchall()}
    for commit in sorted(log_dir.glob("[0-9]" * 20 + ".json")):
        if int(commit.stem) <= start:
            continue
        for line in commit.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                active.add(action["add"]["path"])
            elif "remove" in action:
                active.discard(action["remove"]["path"])
    return sorted(str(Path(location) / unquote(path)) for path in active)


def create_bronze_views(con: duckdb.DuckDBPyConnection, locations: dict[str, str]) -> dict[str, int]:
    """A view `bronze_<source>` per source over its Delta table's active files: the declared columns typed
    (null when the table lacks one), `_rescued_data` and lineage. Returns the file count per source."""
    files = {}
    for source, location in locations.items():
        paths = active_files(location)
        files[source] = len(paths)
        if not paths:
            raise FileNotFoundError(f"bronze {source} at {location} has no data file")
        present = {name for (name,) in con.execute(f"SELECT DISTINCT name FROM parquet_schema({paths!r})").fetchall()}
        columns = [f"CAST({quoted(f.name) if f.name in present else 'NULL'} AS {duck_type(f.dataType)}) "
                   f"AS {quoted(f.name)}" for f in SOURCES[source].landing.fields]
        columns += [quoted(c) for c in BRONZE_EXTRA]
        con.execute(f"CREATE OR REPLACE VIEW bronze_{source} AS SELECT {', '.join(columns)} "
                    f"FROM read_parquet({paths!r}, union_by_name = true)")
    return files


def copy_bronze(con: duckdb.DuckDBPyConnection, out: Path, partitions: dict[str, Sequence[str]]) -> None:
    """Every `bronze_<source>` view, with no transform, into Parquet files under `out/<source>`, partitioned
    (hive-style folders) by `partitions[source]`. Grain: bronze's, one row per bronze row."""
    for source, columns in partitions.items():
        (out / source).mkdir(parents=True)
        by = f", PARTITION_BY ({', '.join(quoted(c) for c in columns)})" if columns else ""
        target = out / source if columns else out / source / "data.parquet"
        con.execute(f"COPY bronze_{source} TO {literal(str(target))} (FORMAT parquet{by})")


# ---------------------------------------------------------------------------------------------------
# Quality rules -> SQL (as expectations.rules translates them to Spark predicates)


def _between(column: str, kw: dict) -> str:
    inside = ["TRUE"]
    if kw.get("min_value") is not None:
        inside.append(f"{column} {'>' if kw.get('strict_min') else '>='} {literal(kw['min_value'])}")
    if kw.get("max_value") is not None:
        inside.append(f"{column} {'<' if kw.get('strict_max') else '<='} {literal(kw['max_value'])}")
    return f"{column} IS NOT NULL AND NOT ({' AND '.join(inside)})"


_ROW_PREDICATES: dict[type, Callable[[str, dict], str]] = {
    NOT_NULL: lambda c, kw: f"{c} IS NULL",
    BETWEEN: _between,
    IN_SET: lambda c, kw: (
        f"{c} IS NOT NULL AND {c} NOT IN ({', '.join(literal(v) for v in kw['value_set'])})"),
    MATCHES: lambda c, kw: f"{c} IS NOT NULL AND NOT regexp_matches({c}, "
                                                      f"{literal(kw['regex'])})",
}


def unexpected_sql(rule: Rule) -> str:
    """The SQL predicate true for the rows Great Expectations counts as unexpected for a row-level rule."""
    kw = dict(rule.kwargs)
    if rule.expectation == A_GREATER_THAN_B:
        a, b = quoted(kw["column_A"]), quoted(kw["column_B"])
        return f"{a} IS NOT NULL AND {b} IS NOT NULL AND NOT ({a} {'>=' if kw.get('or_equal') else '>'} {b})"
    return _ROW_PREDICATES[rule.expectation](quoted(kw["column"]), kw)


def _duplicated_rows(con: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str]) -> int:
    keys = ", ".join(quoted(c) for c in columns)
    not_null = " AND ".join(f"{quoted(c)} IS NOT NULL" for c in columns)
    return con.execute(f"SELECT coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM {table} WHERE {not_null} "
                       f"GROUP BY {keys} HAVING count(*) > 1)").fetchone()[0]


def rule_counts(con: duckdb.DuckDBPyConnection, table: str, rules: Sequence[Rule]) -> dict[str, int]:
    """Unexpected rows of every rule on `table` (row-level rules in one scan; uniqueness by grouping)."""
    unique = {UNIQUE: lambda kw: [kw["column"]],
              COMPOUND_UNIQUE: lambda kw: kw["column_list"]}
    row_level = [r for r in rules if r.expectation not in unique]
    counts = dict(zip([r.name for r in row_level], con.execute(
        f"SELECT {', '.join(f'count_if({unexpected_sql(r)})' for r in row_level)} FROM {table}").fetchone(),
        strict=True)) if row_level else {}
    for r in rules:
        if r.expectation in unique:
            counts[r.name] = _duplicated_rows(con, table, unique[r.expectation](dict(r.kwargs)))
    return counts


def failed_drop_rules_sql(rules: Sequence[Rule]) -> str:
    """The names of the `drop` rules a row fails, as a list (empty when it passes them all)."""
    names = [f"CASE WHEN {unexpected_sql(r)} THEN {literal(r.name)} END" for r in rules
             if r.severity is Severity.DROP]
    return f"list_filter([{', '.join(names)}], lambda x: x IS NOT NULL)" if names else "[]::VARCHAR[]"


def _json_object(columns: Sequence[str]) -> str:
    return f"to_json(struct_pack({', '.join(f'{quoted(c)} := {quoted(c)}' for c in columns)}))"


def gate_and_split(con: duckdb.DuckDBPyConnection, batch: str, target: str, rules: Sequence[Rule],
                   keys: Sequence[str], quarantine: str, label: str, columns: Sequence[str]) -> dict:
    """Count every rule on table `batch`; raise QualityGateError when a `fail` rule has unexpected rows;
    else `target` gets the rows passing every drop rule and `quarantine` the others (key and row as JSON,
    the rules' names, labelled with `label`). Returns rows, quarantined and the rule counts."""
    counts = rule_counts(con, batch, rules)
    failed = [r.name for r in rules if r.severity is Severity.FAIL and counts[r.name]]
    if failed:
        raise QualityGateError(f"{label}: fail rules {failed} ({[counts[n] for n in failed]} rows)")
    con.execute(f"CREATE OR REPLACE TEMP TABLE _flagged AS SELECT *, {failed_drop_rules_sql(rules)} AS failed_rules "
                f"FROM {batch}")
    con.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * EXCLUDE (failed_rules) FROM _flagged "
                "WHERE len(failed_rules) = 0")
    con.execute(f"INSERT INTO {quarantine} SELECT {literal(label)}, {_json_object(keys)}, failed_rules, "
                f"{_json_object(columns)} FROM _flagged WHERE len(failed_rules) > 0")
    quarantined = con.execute(f"SELECT count(*) FROM {quarantine} WHERE source = {literal(label)}").fetchone()[0]
    con.execute("DROP TABLE _flagged")
    return {"rows": con.execute(f"SELECT count(*) FROM {target}").fetchone()[0], "quarantined": quarantined,
            "rules": counts}


# ---------------------------------------------------------------------------------------------------
# Silver


def canonical_sku(column: str) -> str:
    digits = f"regexp_extract({column}, {literal(_SKU_PATTERN)}, 1)"
    return f"CASE WHEN {digits} <> '' THEN 'SKU-' || lpad({digits}, 6, '0') END"


def zip5(column: str) -> str:
    digits = f"regexp_extract({column}, {literal(_ZIP_PATTERN)}, 1)"
    return f"CASE WHEN {digits} <> '' THEN lpad({digits}, 5, '0') END"


def utc_timestamp(column: str) -> str:
    # The connection's time zone is UTC: a TIMESTAMPTZ cast to TIMESTAMP is the UTC wall time.
    return f"CAST(TRY_CAST({column} AS TIMESTAMPTZ) AS TIMESTAMP)"


def _scaled(value: str, unit: str, factors: dict[str, float]) -> str:
    cases = " ".join(f"WHEN {literal(name)} THEN {factor!r}" for name, factor in factors.items())
    return f"{value} * (CASE lower(trim({unit})) {cases} END)"


def to_kg(value: str, unit: str) -> str:
    return _scaled(value, unit, {"g": 0.001, "kg": 1.0, "lb": 0.45359237})


def to_cm(value: str, unit: str) -> str:
    return _scaled(value, unit, {"cm": 1.0, "in": 2.54})


@dataclass(frozen=True)
class Standardization:
    """A source's standardization: column expressions over bronze (`derive`, then `then` over those), the
    zone lookup by `postal_code`, and `<amount>_usd` for `usd` amounts at the fx rate of `on_date`."""

    derive: dict[str, str] = field(default_factory=dict)
    then: dict[str, str] = field(default_factory=dict)
    zone: bool = False
    usd: tuple[str, ...] = ()
    on_date: str = ""


STANDARDIZATIONS: dict[str, Standardization] = {
    "fx_rates": Standardization({"currency": "upper(trim(currency))"}),
    "shipping_zones": Standardization({"postal_prefix": "lpad(trim(postal_prefix), 3, '0')"}),
    "shipping_rates": Standardization(usd=("base_rate", "per_kg_over", "remote_surcharge"), on_date="effective_from"),
    "products": Standardization(
        {"sku": canonical_sku("sku"), "category": "lower(trim(category))", "weight_kg": to_kg("weight", "weight_unit"),
         **{f"{d}_cm": to_cm(d, "dim_unit") for d in ("length", "width", "height")}},
        usd=("list_price", "map_price"), on_date="ingest_date"),
    "suppliers": Standardization({"sku": canonical_sku("sku")}, usd=("unit_cost",), on_date="valid_from"),
    "market_prices": Standardization({"sku": canonical_sku("sku"), "observed_date": "CAST(observed_at AS DATE)"},
                                     usd=("price",), on_date="observed_date"),
    "customers": Standardization({"postal_code": zip5("postal_code")}, zone=True),
    "transactions": Standardization(
        {"sku": canonical_sku("sku"), "event_time": utc_timestamp("event_time"), "postal_code": zip5("postal_code"),
         "actual_shipping_cost_usd": "actual_shipping_cost"},
        {"transaction_date": "CAST(event_time AS DATE)"}, zone=True,
        usd=("unit_price_paid", "shipping_charged"), on_date="transaction_date"),
    "clickstream": Standardization(
        {"sku": canonical_sku("sku"), "event_time": utc_timestamp("event_time"), "price_shown_usd": "price_shown"},
        {"event_date": "CAST(event_time AS DATE)"}),
}


def _with_columns(relation: str, columns: Sequence[str], exprs: dict[str, str]) -> tuple[str, list[str]]:
    """`SELECT *` over `relation` with `exprs` replacing or adding columns; returns the SQL and its columns."""
    replaced = {n: e for n, e in exprs.items() if n in columns}
    added = {n: e for n, e in exprs.items() if n not in columns}
    star = f"* REPLACE ({', '.join(f'{e} AS {quoted(n)}' for n, e in replaced.items())})" if replaced else "*"
    select = ", ".join([star, *(f"{e} AS {quoted(n)}" for n, e in added.items())])
    return f"(SELECT {select} FROM {relation})", [*columns, *added]


def standardized_sql(source: str) -> str:
    """Bronze rows of `source` -> its silver columns; one row per bronze row (duplicates still there)."""
    spec = STANDARDIZATIONS[source]
    columns = [f.name for f in SOURCES[source].landing.fields] + list(BRONZE_EXTRA)
    relation, columns = _with_columns(f"bronze_{source}", columns, spec.derive)
    relation, columns = _with_columns(relation, columns, spec.then)
    joins, extra = [], []
    if spec.zone:
        joins.append("LEFT JOIN silver_shipping_zones z ON substring(s.postal_code, 1, 3) = z.postal_prefix")
        extra += ["z.zone AS delivery_zone", "z.is_remote AS is_remote"]
    if spec.usd:
        joins.append(f"LEFT JOIN fx_periods f ON s.currency = f.currency AND s.{spec.on_date} >= f.valid_from "
                     f"AND (f.valid_to IS NULL OR s.{spec.on_date} < f.valid_to)")
        extra += [f"s.{a} * f.rate_to_usd AS {a}_usd" for a in spec.usd]
    joined = f"SELECT s.*{''.join(', ' + e for e in extra)} FROM {relation} s {' '.join(joins)}"
    return conformed_sql(joined, SOURCES[source].silver)


def latest_per_key_sql(relation: str, keys: Sequence[str]) -> str:
    """One row per key: the latest delivery (ingest date, then ingestion time, then file)."""
    return (f"SELECT * EXCLUDE (_rank) FROM (SELECT *, row_number() OVER (PARTITION BY "
            f"{', '.join(quoted(k) for k in keys)} ORDER BY ingest_date DESC, _ingested_at DESC, "
            f"_source_file DESC) AS _rank FROM ({relation})) WHERE _rank = 1")


def promote_silver(con: duckdb.DuckDBPyConnection, sources: Sequence[str],
                   progress: Callable[[str, dict], None] = lambda source, result: None) -> dict[str, dict]:
    """Every source of `sources` (in promotion order) bronze -> `silver_<source>`; returns rows,
    quarantined rows and rule counts per source."""
    con.execute("CREATE OR REPLACE TABLE silver_quarantine (source VARCHAR, record_key VARCHAR, "
                "failed_rules VARCHAR[], record VARCHAR)")
    results = {}
    for source in (s for s in PROMOTION_ORDER if s in sources):
        con.execute(f"CREATE OR REPLACE TEMP TABLE _batch AS "
                    f"{latest_per_key_sql(standardized_sql(source), SOURCES[source].key)}")
        results[source] = gate_and_split(con, "_batch", f"silver_{source}", SUITES[source], SOURCES[source].key,
                                         "silver_quarantine", source, SOURCES[source].silver.fieldNames())
        con.execute("DROP TABLE _batch")
        if source == "fx_rates":
            con.execute("CREATE OR REPLACE TEMP TABLE fx_periods AS SELECT currency, rate_date AS valid_from, "
                        "lead(rate_date) OVER (PARTITION BY currency ORDER BY rate_date) AS valid_to, rate_to_usd "
                        "FROM silver_fx_rates")
        progress(source, results[source])
    return results


# ---------------------------------------------------------------------------------------------------
# Gold


def valid_on_sql(frame: str, on: str, history: str, keys: Sequence[str], valid_from: str,
                 columns: Sequence[str]) -> str:
    """`frame` with `columns` of the `history` row in force on each row's `on` date (features.point_in_time)."""
    key_list = ", ".join(quoted(k) for k in keys)
    periods = (f"SELECT {key_list}, {quoted(valid_from)} AS _valid_from, lead({quoted(valid_from)}) OVER "
               f"(PARTITION BY {key_list} ORDER BY {quoted(valid_from)}) AS _valid_to, "
               f"{', '.join(quoted(c) for c in columns)} FROM {history}")
    matched = " AND ".join([*(f"f.{quoted(k)} = h.{quoted(k)}" for k in keys), f"f.{quoted(on)} >= h._valid_from",
                            f"(h._valid_to IS NULL OR f.{quoted(on)} < h._valid_to)"])
    return (f"SELECT f.*, {', '.join(f'h.{quoted(c)}' for c in columns)} FROM ({frame}) f "
            f"LEFT JOIN ({periods}) h ON {matched}")


def conformed_sql(relation: str, schema: StructType) -> str:
    """The schema's columns, in its order and types (transforms.standardize.conform_to)."""
    columns = ", ".join(f"CAST({quoted(f.name)} AS {duck_type(f.dataType)}) AS {quoted(f.name)}" for f in schema.fields)
    return f"SELECT {columns} FROM ({relation})"


ACTIVITY = """
SELECT coalesce(e.sku, s.sku) AS sku, coalesce(e.date, s.date) AS date, e.views, e.add_to_carts, e.purchases,
       e.avg_price_usd, s.units, s.revenue_usd
FROM (SELECT sku, event_date AS date, count_if(event_type = 'view') AS views,
             count_if(event_type = 'add_to_cart') AS add_to_carts, count_if(event_type = 'purchase') AS purchases,
             avg(CASE WHEN event_type = 'view' THEN price_shown_usd END) AS avg_price_usd
      FROM silver_clickstream GROUP BY sku, event_date) e
FULL JOIN (SELECT sku, transaction_date AS date, CAST(sum(quantity) AS BIGINT) AS units,
                  sum(quantity * unit_price_paid_usd) AS revenue_usd
           FROM silver_transactions GROUP BY sku, transaction_date) s
ON e.sku = s.sku AND e.date = s.date
"""

COST_OFFERS = """
SELECT c.sku, c.change_date, o.supplier_id
FROM (SELECT DISTINCT sku, valid_from AS change_date FROM silver_suppliers) c
JOIN (SELECT DISTINCT sku, supplier_id FROM silver_suppliers) o ON c.sku = o.sku
"""

DAILY_ROWS = """
WITH span AS (SELECT min(date) AS first, max(date) AS last FROM activity),
calendar AS (SELECT CAST(unnest(generate_series(first, last, INTERVAL 1 DAY)) AS DATE) AS date FROM span),
days AS (SELECT p.sku, p.category, p.map_price_usd, c.date
         FROM silver_products p CROSS JOIN span s
         JOIN calendar c ON c.date >= greatest(coalesce(p.launch_date, s.first), s.first)),
competitors AS (SELECT sku, observed_date AS date, min(price_usd) AS competitor_min_price_usd
                FROM silver_market_prices GROUP BY sku, observed_date)
SELECT j.*, m.competitor_min_price_usd
FROM (SELECT coalesce(d.sku, a.sku) AS sku, coalesce(d.date, a.date) AS date, d.category, d.map_price_usd,
             coalesce(a.views, 0) AS views, coalesce(a.add_to_carts, 0) AS add_to_carts,
             coalesce(a.purchases, 0) AS purchases, coalesce(a.units, 0) AS units,
             coalesce(a.revenue_usd, 0) AS revenue_usd, a.avg_price_usd
      FROM days d FULL JOIN activity a ON d.sku = a.sku AND d.date = a.date) j
LEFT JOIN competitors m ON j.sku = m.sku AND j.date = m.date
"""


def _trailing(by: str, days: int) -> str:
    return f"(PARTITION BY {by} ORDER BY _day RANGE BETWEEN {days - 1} PRECEDING AND CURRENT ROW)"


def _ratio(numerator: str, denominator: str) -> str:
    return f"(CASE WHEN ({denominator}) <> 0 THEN ({numerator}) / ({denominator}) END)"


def pricing_feature_rows_sql() -> str:
    """features.pricing.pricing_features over `gold_pricing_daily`, before the cost lookup and derived columns."""
    windows = CONVERSION_WINDOWS
    history = "(PARTITION BY sku ORDER BY _day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
    sku = ", ".join([
        *(f"sum(views) OVER {_trailing('sku', n)} AS sku_views_{n}d" for n in windows),
        *(f"sum(purchases) OVER {_trailing('sku', n)} AS _purchases_{n}" for n in windows),
        *(f"sum(units) OVER {_trailing('sku', n)} AS sku_units_{n}d" for n in (MOMENTUM_DAYS, REFERENCE_DAYS)),
        f"quantile_cont(avg_price_usd, 0.5) OVER {_trailing('sku', REFERENCE_DAYS)} AS typical_price_usd",
        f"last_value(avg_price_usd IGNORE NULLS) OVER {history} AS last_price_usd",
        f"last_value(competitor_min_price_usd IGNORE NULLS) OVER {history} AS competitor_min_price_usd",
    ])
    category = ", ".join([
        *(f"sum(views) OVER {_trailing('category', n)} AS category_views_{n}" for n in windows),
        *(f"sum(purchases) OVER {_trailing('category', n)} AS category_purchases_{n}" for n in windows),
        *(f"count(*) OVER {_trailing('category', n)} AS category_days_{n}" for n in (MOMENTUM_DAYS, REFERENCE_DAYS)),
    ])
    return f"""
WITH daily AS (SELECT *, date - DATE '1970-01-01' AS _day FROM gold_pricing_daily),
per_sku AS (SELECT sku, category, date, {sku} FROM daily),
per_category AS (SELECT category, date, skus AS category_skus, {category}
                 FROM (SELECT category, date, date - DATE '1970-01-01' AS _day, sum(views) AS views,
                              sum(purchases) AS purchases, count(*) AS skus
                       FROM daily GROUP BY category, date))
SELECT s.*, c.* EXCLUDE (category, date), p.map_price_usd, p.launch_date, s.date + 1 AS as_of_date
FROM per_sku s JOIN per_category c ON s.category = c.category AND s.date = c.date
LEFT JOIN (SELECT sku, map_price_usd, launch_date FROM silver_products) p ON s.sku = p.sku
"""


def pricing_features_sql() -> str:
    rows = valid_on_sql(pricing_feature_rows_sql(), "as_of_date", "cost_history", ("sku",), "valid_from",
                        ("unit_cost_usd",))

    def daily_views(days: int) -> str:
        return _ratio(f"category_views_{days}", f"category_days_{days}")

    derived = ", ".join([
        "CAST(as_of_date AS TIMESTAMP) AS feature_time",
        *(f"{_ratio(f'_purchases_{n}', f'sku_views_{n}d')} AS sku_conversion_{n}d" for n in CONVERSION_WINDOWS),
        *(f"{_ratio(f'category_purchases_{n}', f'category_views_{n}')} AS category_conversion_{n}d"
          for n in CONVERSION_WINDOWS),
        f"{_ratio(f'sku_views_{REFERENCE_DAYS}d', f'category_views_{REFERENCE_DAYS}')} * category_skus AS anchor_score",
        f"{_ratio('last_price_usd', 'competitor_min_price_usd')} AS competitor_price_index",
        f"100 * {_ratio('last_price_usd - unit_cost_usd', 'last_price_usd')} AS margin_pct",
        "as_of_date - launch_date AS days_since_launch",
        "isodow(as_of_date) AS day_of_week",
        "dayofyear(as_of_date) AS day_of_year",
        "isodow(as_of_date) >= 6 AS is_weekend",
        f"{_ratio(daily_views(MOMENTUM_DAYS), daily_views(REFERENCE_DAYS))} AS category_views_7d_vs_28d",
    ])
    return conformed_sql(f"SELECT *, {derived} FROM ({rows})", GOLD_SCHEMAS["pricing_features"])


ORDERS = """
WITH lost AS (SELECT json_extract_string(record, '$.order_id') AS order_id,
                     list(DISTINCT json_extract_string(record_key, '$.event_id'))
                         FILTER (WHERE json_extract_string(record_key, '$.event_id') IS NOT NULL) AS lost_event_ids
              FROM silver_quarantine WHERE source = 'transactions' GROUP BY 1),
lines AS (SELECT t.*, m.weight_kg, m.volume_cm3, q.lost_event_ids
          FROM silver_transactions t
          LEFT JOIN (SELECT sku, weight_kg, length_cm * width_cm * height_cm AS volume_cm3 FROM silver_products) m
                 ON t.sku = m.sku
          LEFT JOIN lost q ON t.order_id = q.order_id),
grouped AS (
  SELECT order_id, min(event_time) AS order_time, min(transaction_date) AS order_date,
         max(delivery_zone) AS delivery_zone, bool_or(is_remote) AS is_remote, max(carrier) AS carrier,
         max(service_level) AS service_level, max(shipping_charged_usd) AS shipping_charged_usd,
         max(actual_shipping_cost_usd) AS actual_shipping_cost_usd, CAST(sum(quantity) AS BIGINT) AS items,
         sum(quantity * unit_price_paid_usd) AS subtotal_usd,
         max(line_number) = count(*) AND coalesce(max(len(lost_event_ids)), 0)
             = coalesce(sum(CAST(list_contains(lost_event_ids, event_id) AS INTEGER)), 0) AS _complete,
         count(*) AS _lines, count(quantity * weight_kg) AS _weighed, sum(quantity * weight_kg) AS _weight,
         count(quantity * volume_cm3) AS _measured, sum(quantity * volume_cm3) AS _volume
  FROM lines GROUP BY order_id)
SELECT * EXCLUDE (_complete, _lines, _weighed, _weight, _measured, _volume),
       CASE WHEN _complete AND _weighed = _lines THEN _weight END AS actual_weight_kg,
       CASE WHEN _complete AND _measured = _lines THEN _volume END AS volume_cm3
FROM grouped
"""

RATE_CARDS = """
SELECT carrier, service_level, zone AS delivery_zone, effective_from,
       list_sort(list({'weight_break_kg': weight_break_kg, 'base_rate_usd': base_rate_usd})) AS breaks,
       max(per_kg_over_usd) AS per_kg_over_usd, max(fuel_surcharge_pct) AS fuel_surcharge_pct,
       max(remote_surcharge_usd) AS remote_surcharge_usd, max(volumetric_divisor) AS volumetric_divisor
FROM silver_shipping_rates GROUP BY carrier, service_level, zone, effective_from
"""


def shipping_features_sql() -> str:
    card = ("breaks", "per_kg_over_usd", "fuel_surcharge_pct", "remote_surcharge_usd", "volumetric_divisor")
    shipments = valid_on_sql(ORDERS, "order_date", f"({RATE_CARDS})", ("carrier", "service_level", "delivery_zone"),
                             "effective_from", card)
    weighed = f"""
SELECT *, CASE WHEN actual_weight_kg IS NOT NULL AND volumetric_weight_kg IS NOT NULL
               THEN greatest(actual_weight_kg, volumetric_weight_kg) END AS billable_weight_kg
FROM (SELECT *, volume_cm3 / volumetric_divisor AS volumetric_weight_kg FROM ({shipments}))"""
    fitting = "list_filter(breaks, lambda b: b.weight_break_kg >= billable_weight_kg)"
    priced = f"""
SELECT *, CASE WHEN billable_weight_kg IS NOT NULL
               THEN CASE WHEN len({fitting}) > 0 THEN {fitting}[1] ELSE breaks[-1] END END AS _break
FROM ({weighed})"""
    cost = ("(_break.base_rate_usd + per_kg_over_usd * greatest(0.0, billable_weight_kg - breaks[-1].weight_break_kg))"
            " * (1 + fuel_surcharge_pct / 100)"
            " + CASE WHEN is_remote THEN remote_surcharge_usd WHEN NOT is_remote THEN 0.0 END")
    return conformed_sql(f"SELECT *, _break.weight_break_kg AS weight_break_kg, {cost} AS rate_card_cost_usd "
                         f"FROM ({priced})", GOLD_SCHEMAS["shipping_features"])


def build_gold(con: duckdb.DuckDBPyConnection,
               progress: Callable[[str, dict], None] = lambda name, result: None) -> dict[str, dict]:
    """Silver -> `gold_pricing_daily`, `gold_pricing_features`, `gold_shipping_features` (and
    `gold_quarantine`), each behind its suite; returns rows, quarantined rows and rule counts per table."""
    con.execute("CREATE OR REPLACE TABLE gold_quarantine (source VARCHAR, record_key VARCHAR, "
                "failed_rules VARCHAR[], record VARCHAR)")
    con.execute(f"CREATE OR REPLACE TEMP TABLE activity AS {ACTIVITY}")
    con.execute("CREATE OR REPLACE TEMP TABLE cost_history AS SELECT sku, change_date AS valid_from, "
                "min(unit_cost_usd) AS unit_cost_usd FROM ("
                + valid_on_sql(COST_OFFERS, "change_date", "silver_suppliers", ("sku", "supplier_id"), "valid_from",
                               ("unit_cost_usd",)) + ") GROUP BY sku, change_date")
    daily = valid_on_sql(DAILY_ROWS, "date", "cost_history", ("sku",), "valid_from", ("unit_cost_usd",))
    built = {"pricing_daily": lambda: conformed_sql(daily, GOLD_SCHEMAS["pricing_daily"]),
             "pricing_features": pricing_features_sql, "shipping_features": shipping_features_sql}
    results = {}
    for name, sql in built.items():
        con.execute(f"CREATE OR REPLACE TEMP TABLE _gold AS {sql()}")
        results[name] = gate_and_split(con, "_gold", f"gold_{name}", GOLD_SUITES[name], GOLD_KEYS[name],
                                       "gold_quarantine", name, GOLD_SCHEMAS[name].fieldNames())
        con.execute("DROP TABLE _gold")
        progress(name, results[name])
    return results


def connect(database: str = ":memory:", threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection in UTC (as the Spark sessions), optionally limited to `threads`."""
    con = duckdb.connect(database)
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute(f"SET threads = {threads}")
    return con


def run(con: duckdb.DuckDBPyConnection, bronze: dict[str, str],
        progress: Callable[[str, str, dict], None] = lambda stage, name, result: None) -> dict:
    """Bronze Delta tables (`bronze`: source -> location) -> silver and gold tables in `con`; returns the
    seconds of each stage and what each source and gold table gave."""
    clock = time.perf_counter()
    files = create_bronze_views(con, bronze)
    silver = promote_silver(con, list(bronze), lambda s, r: progress("silver", s, r))
    silver_s = time.perf_counter() - clock
    gold = build_gold(con, lambda g, r: progress("gold", g, r))
    return {"bronze_files": files, "silver": silver, "gold": gold,
            "seconds": {"silver": round(silver_s, 2), "gold": round(time.perf_counter() - clock - silver_s, 2)}}
