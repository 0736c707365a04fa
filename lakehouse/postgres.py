"""The operational database: connections to the stack's PostgreSQL from the one settings object.

The password travels inside the connection call, never on a command line or in a log line.
"""

from __future__ import annotations

import psycopg

from lakehouse.delta_reader import DeltaReader
from lakehouse.settings import Settings
from lakehouse.tables import synced_tables


class PostgresUnavailable(RuntimeError):
    """PostgreSQL did not answer, or refused the connection: the message says where, and what to do."""


def connect(settings: Settings, timeout_s: int = 5, **options) -> psycopg.Connection:
    """A connection to the operational database; PostgresUnavailable when it does not answer."""
    try:
        return psycopg.connect(host=settings.pg_host, port=settings.pg_port, user=settings.pg_user,
                               password=settings.pg_password.get_secret_value(), dbname=settings.pg_database,
                               connect_timeout=timeout_s, application_name="lakehouse", **options)
    except psycopg.OperationalError as error:
        reason = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
        raise PostgresUnavailable(
            f"PostgreSQL at {settings.pg_host}:{settings.pg_port} (database {settings.pg_database}, user "
            f"{settings.pg_user}) did not accept a connection ({reason}); start it with `make up` (or "
            "`lakehouse stack up postgres`)") from error


# What each synced table holds (operational.sync writes it): the Delta table and version it was loaded from.
STATE_TABLE = "lakehouse.synced_tables"
STATE_DDL = (
    "CREATE SCHEMA IF NOT EXISTS lakehouse",
    f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (table_name text PRIMARY KEY, delta_table_id text NOT NULL, "
    "delta_version bigint NOT NULL, delta_committed_at timestamptz NOT NULL, rows bigint NOT NULL, "
    "synced_at timestamptz NOT NULL)",
)


def sync_states(settings: Settings, reader: DeltaReader) -> dict[str, dict]:
    """Per synced table, what PostgreSQL holds against gold's latest version: the version synced, versions and
    seconds behind gold, rows, when. A table never synced (or synced from another Delta table) has
    `synced_version` None; PostgresUnavailable when the database does not answer."""
    gold = reader.describe({t.name: t.location(settings) for t in synced_tables()})
    with connect(settings, timeout_s=3) as connection:
        found = connection.execute("SELECT to_regclass(%s) IS NOT NULL", (STATE_TABLE,)).fetchone()[0]
        rows = connection.execute(
            f"SELECT table_name, delta_table_id, delta_version, delta_committed_at, rows, synced_at FROM {STATE_TABLE}"
        ).fetchall() if found else []
    synced = {row[0]: row[1:] for row in rows}
    states = {}
    for name, latest in gold.items():
        table_id, version, committed_at, row_count, synced_at = synced.get(name, (None,) * 5)
        same_table = latest is not None and table_id == latest["table_id"]
        states[name] = {
            "synced_version": version if same_table else None,
            "gold_version": latest["version"] if latest else None,
            "versions_behind": latest["version"] - version if same_table else None,
            "lag_s": round(max(0.0, latest["committed_at_ms"] / 1000 - committed_at.timestamp()), 1)
            if same_table else None,
            "rows": row_count if same_table else None,
            "synced_at": synced_at.isoformat(timespec="seconds") if same_table else None,
        }
    return states
