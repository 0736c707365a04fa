"""Synced tables: the gold tables an e-commerce platform reads, copied into the operational database (PostgreSQL).

The tables are those of the registry with a `postgres_key` (`gold.prices`, `gold.shipping_rate_cards`); each
lands under the same name in PostgreSQL, with that primary key. A sync of a table:
- reads the table's latest Delta version with delta-rs (no Spark), and records that version;
- writes nothing when the version (of the same Delta table) is the one already synced;
- otherwise loads the rows into a temporary table, then replaces the synced table's rows, records the version
  and (re)creates the platform's views (`operational.views`), all in one transaction: a reader sees the old
  table or the new one, never a mix, and is never blocked.
The pipeline's `sync` step runs it after every `score` (triggered), `lakehouse sync` on demand. PostgreSQL down
or lost during a sync fails it with PostgresUnavailable (the step's retries try again); gold is only read, and
the next sync catches up.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from psycopg import sql

from lakehouse.delta_reader import DeltaReader, storage_options
from lakehouse.postgres import STATE_DDL, STATE_TABLE, PostgresUnavailable, connect
from lakehouse.settings import Settings
from lakehouse.tables import Table, synced_tables
from operational.views import VIEWS

log = logging.getLogger(__name__)

# Syncs of the same database wait for each other (two runners, or a run and `lakehouse sync`).
SYNC_LOCK_KEY = 7_041_901


@dataclass(frozen=True)
class SyncResult:
    """What one sync of one table did: `synced` False when the version was already there."""

    table: str
    version: int
    rows: int
    synced: bool
    seconds: float


def postgres_type(data_type: pa.DataType) -> str:
    """The PostgreSQL column type of an Arrow type of a gold table."""
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        return postgres_type(data_type.value_type) + "[]"
    if pa.types.is_timestamp(data_type):
        return "timestamptz" if data_type.tz else "timestamp"
    if pa.types.is_decimal(data_type):
        return f"numeric({data_type.precision}, {data_type.scale})"
    for is_type, name in ((pa.types.is_string, "text"), (pa.types.is_large_string, "text"),
                          (pa.types.is_boolean, "boolean"), (pa.types.is_int16, "smallint"),
                          (pa.types.is_int32, "integer"), (pa.types.is_int64, "bigint"),
                          (pa.types.is_float32, "real"), (pa.types.is_float64, "double precision"),
                          (pa.types.is_date32, "date")):
        if is_type(data_type):
            return name
    raise TypeError(f"no PostgreSQL type for the Arrow type {data_type}")


def columns(schema: pa.Schema, key: tuple[str, ...]) -> list[tuple[str, str]]:
    """(name, PostgreSQL type with NOT NULL on the key) per column, in the table's order."""
    missing = set(key) - set(schema.names)
    if missing:
        raise ValueError(f"primary key columns {sorted(missing)} are not in the table ({', '.join(schema.names)})")
    return [(f.name, postgres_type(f.type) + (" NOT NULL" if f.name in key else "")) for f in schema]


def _array_literal(values: pa.Array) -> pa.Array:
    """A list<string> column as PostgreSQL array literals ({"a","b"}), each element quoted and escaped."""
    escaped = pc.replace_substring(pc.replace_substring(pc.list_flatten(values), "\\", "\\\\"), '"', '\\"')
    offsets = pc.subtract(values.offsets, values.offsets[0])  # list_flatten starts at a slice's first element
    elements = pa.ListArray.from_arrays(offsets, escaped, mask=values.is_null())
    joined = pc.binary_join(elements, '","')
    empty = pc.equal(pc.list_value_length(values), 0)
    return pc.if_else(empty, pa.scalar("{}"), pc.binary_join_element_wise("{\"", joined, "\"}", ""))


def csv_bytes(rows: pa.Table) -> bytes:
    """The rows as CSV for PostgreSQL's COPY: every value quoted, a null unquoted and empty (COPY reads it as
    NULL, and "" as the empty string), list columns as array literals."""
    for index, field in enumerate(rows.schema):
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
            rows = rows.set_column(index, field.name, _array_literal(rows.column(field.name).combine_chunks()))
    out = io.BytesIO()
    pa_csv.write_csv(rows, out, pa_csv.WriteOptions(include_header=False, quoting_style="all_valid"))
    return out.getvalue()


def _identifier(name: str) -> sql.Identifier:
    return sql.Identifier(*name.split("."))


def _ensure_table(cursor: psycopg.Cursor, target: Table, wanted: list[tuple[str, str]]) -> None:
    """Create the synced table with its primary key; drop and create it again when gold's columns changed (the
    views depending on it are created again after the load)."""
    schema, name = target.name.split(".")
    cursor.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    cursor.execute("SELECT a.attname, format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull "
                   "THEN ' NOT NULL' ELSE '' END FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) "
                   "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum", (target.name,))
    existing = [tuple(row) for row in cursor.fetchall()]
    if existing == wanted:
        return
    if existing:
        log.info("gold's columns changed: creating the synced table again", extra={"table": target.name})
        cursor.execute(sql.SQL("DROP TABLE {} CASCADE").format(_identifier(target.name)))
    cursor.execute(sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY ({}))").format(
        _identifier(target.name),
        sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(column), sql.SQL(kind)) for column, kind in wanted),
        sql.SQL(", ").join(map(sql.Identifier, target.postgres_key))))


def _load(cursor: psycopg.Cursor, target: Table, rows: pa.Table) -> None:
    """Load the rows into a temporary table, then replace the synced table's rows with them."""
    cursor.execute(sql.SQL("CREATE TEMP TABLE sync_load (LIKE {}) ON COMMIT DROP").format(_identifier(target.name)))
    with cursor.copy("COPY sync_load FROM STDIN (FORMAT csv)") as copy:
        copy.write(csv_bytes(rows))
    cursor.execute(sql.SQL("DELETE FROM {}").format(_identifier(target.name)))
    # In key order: a lookup's rows share a few pages (one, not one per day, for a SKU's price history).
    cursor.execute(sql.SQL("INSERT INTO {} SELECT * FROM sync_load ORDER BY {}").format(
        _identifier(target.name), sql.SQL(", ").join(map(sql.Identifier, target.postgres_key))))


def sync_table(connection: psycopg.Connection, reader: DeltaReader, settings: Settings, target: Table
               ) -> SyncResult | None:
    """Sync one table (see the module docstring); None when gold has no such table yet."""
    started = time.monotonic()
    gold = reader.describe({target.name: target.location(settings)})[target.name]
    if gold is None:
        log.warning("nothing to sync: no gold table yet", extra={"table": target.name})
        return None
    with connection.transaction(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SYNC_LOCK_KEY,))
        for statement in STATE_DDL:
            cursor.execute(statement)
        cursor.execute(f"SELECT delta_table_id, delta_version FROM {STATE_TABLE} WHERE table_name = %s",
                       (target.name,))
        if cursor.fetchone() == (gold["table_id"], gold["version"]):
            return SyncResult(target.name, gold["version"], 0, False, time.monotonic() - started)
        rows = reader.read(target.location(settings), gold["version"])
        _ensure_table(cursor, target, columns(rows.schema, target.postgres_key))
        _load(cursor, target, rows)
        cursor.execute(
            f"INSERT INTO {STATE_TABLE} (table_name, delta_table_id, delta_version, delta_committed_at, rows, "
            "synced_at) VALUES (%s, %s, %s, to_timestamp(%s / 1000.0), %s, now()) ON CONFLICT (table_name) DO "
            "UPDATE SET delta_table_id = EXCLUDED.delta_table_id, delta_version = EXCLUDED.delta_version, "
            "delta_committed_at = EXCLUDED.delta_committed_at, rows = EXCLUDED.rows, synced_at = EXCLUDED.synced_at",
            (target.name, gold["table_id"], gold["version"], gold["committed_at_ms"], rows.num_rows))
        for view in VIEWS.get(target.name, ()):
            cursor.execute(view)
    connection.execute(sql.SQL("ANALYZE {}").format(_identifier(target.name)))
    return SyncResult(target.name, gold["version"], rows.num_rows, True, time.monotonic() - started)


def run(settings: Settings, reader: DeltaReader | None = None) -> list[SyncResult]:
    """Sync every synced table; PostgresUnavailable when PostgreSQL does not answer or is lost midway."""
    own_reader = reader is None
    reader = reader or DeltaReader(storage_options(settings))
    try:
        with connect(settings, autocommit=True) as connection:
            results = [result for target in synced_tables()
                       if (result := sync_table(connection, reader, settings, target)) is not None]
    except psycopg.OperationalError as error:  # the server stopped or the connection broke midway
        raise PostgresUnavailable(f"the sync to PostgreSQL at {settings.pg_host}:{settings.pg_port} broke off: "
                                  f"{str(error).strip().splitlines()[0]}; the synced tables keep their previous "
                                  "version, and the next sync catches up") from error
    finally:
        if own_reader:
            reader.close()
    for result in results:
        log.info("synced" if result.synced else "already in sync",
                 extra={"table": result.table, "version": result.version, "rows": result.rows,
                        "seconds": round(result.seconds, 3)})
    return results


def step(settings: Settings) -> str:
    """The pipeline step (orchestration.steps)."""
    results = run(settings)
    if not results:
        return "nothing to sync yet (no gold table)"
    return ", ".join(f"{r.table} v{r.version}: " + (f"{r.rows} rows" if r.synced else "already in sync")
                     for r in results)
