"""The catalog: every registered table by name (`<layer>.<table>`) in a Hive metastore kept in the stack's PostgreSQL.

Spark's built-in Hive client (Hive 2.3) reads the metastore's connection from a `hive-site.xml` on the driver's
class path: a private file under the state folder, so that the password is never on a command line. Every Spark
JVM (the jobs, the streaming driver, the SQL endpoint) shares the one metastore; the write layer
(`lakehouse.delta`) registers each table it writes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from xml.sax.saxutils import escape

import psycopg
from psycopg import sql
from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession

from lakehouse.postgres import connect
from lakehouse.settings import Settings
from lakehouse.tables import Table

# Per process, the location each table was last registered at: a job registers its tables once, not per write.
_registered: dict[str, str] = {}


def hive_conf_dir(settings: Settings) -> Path:
    """The folder holding hive-site.xml, put on the class path of every Spark driver."""
    return settings.state_dir / "metastore"


def metastore_properties(settings: Settings) -> dict[str, str]:
    """The Hive client's settings: the metastore in PostgreSQL, its schema created by the first client."""
    return {
        "javax.jdo.option.ConnectionURL":
            f"jdbc:postgresql://{settings.pg_host}:{settings.pg_port}/{settings.metastore_database}",
        "javax.jdo.option.ConnectionDriverName": "org.postgresql.Driver",
        "javax.jdo.option.ConnectionUserName": settings.pg_user,
        "javax.jdo.option.ConnectionPassword": settings.pg_password.get_secret_value(),
        # Spark ships no Hive schema tool: DataNucleus creates the metastore's tables on first use. Without foreign
        # keys: it adds them while another of its connections holds a row lock on the referenced table, and
        # PostgreSQL then waits forever (measured: the first registration never ended).
        "datanucleus.schema.autoCreateTables": "true",
        "datanucleus.schema.autoCreateColumns": "true",
        "datanucleus.schema.autoCreateConstraints": "false",
        "hive.metastore.schema.verification": "false",
    }


def write_hive_site(settings: Settings) -> None:
    """Write `<state>/metastore/hive-site.xml`, readable by its owner only."""
    folder = hive_conf_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    body = "".join(f"  <property><name>{escape(k)}</name><value>{escape(v)}</value></property>\n"
                   for k, v in metastore_properties(settings).items())
    descriptor, staged = tempfile.mkstemp(dir=folder, prefix=".hive-site-")  # mode 0600
    with os.fdopen(descriptor, "w") as out:
        out.write(f'<?xml version="1.0"?>\n<configuration>\n{body}</configuration>\n')
    os.replace(staged, folder / "hive-site.xml")  # atomic: a JVM starting meanwhile reads the old or the new file


def ensure_metastore_database(settings: Settings) -> None:
    """Create the metastore's database on the stack's PostgreSQL unless it exists (PostgresUnavailable when the
    server does not answer)."""
    with connect(settings, autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                              (settings.metastore_database,)).fetchone():
            return
        try:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(settings.metastore_database)))
        except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            pass  # another process created it meanwhile (caught in the act, PostgreSQL reports the catalog's index)


def _quoted(name: str) -> str:
    return ".".join(f"`{part}`" for part in name.split("."))


def _same_location(registered: str, location: str) -> bool:
    """Locations as the metastore keeps them (`file:/…` for a local folder) against the registry's."""
    return registered.removeprefix("file:").rstrip("/") == location.removeprefix("file:").rstrip("/")


def _metadata_catalog(spark: SparkSession, name: str):
    """Spark's session catalog and the table's identifier in it: the metastore's own entries, read and dropped
    without opening the Delta table (a name another lake took may point at storage that is gone or unreachable)."""
    layer, table = name.split(".")
    jvm = spark._jvm
    identifier = jvm.org.apache.spark.sql.catalyst.TableIdentifier(table, jvm.scala.Option.apply(layer),
                                                                    jvm.scala.Option.empty())
    return spark._jsparkSession.sessionState().catalog(), identifier


def registered_location(spark: SparkSession, name: str) -> str | None:
    """Where the metastore says the table is, or None when it has no such table."""
    catalog, identifier = _metadata_catalog(spark, name)
    if not catalog.tableExists(identifier):
        return None
    return catalog.getTableMetadata(identifier).location().toString()


def register(spark: SparkSession, target: Table, settings: Settings, recheck: bool = False) -> None:
    """Keep `<layer>.<table>` in the metastore pointing at the table's Delta location (an external table: dropping
    it never deletes data). Idempotent; a table registered at another location (another lake on the same
    metastore) is pointed at this one. Once per process and table unless `recheck`."""
    location = target.location(settings)
    if not settings.catalog_enabled or (_registered.get(target.name) == location and not recheck):
        return
    if not _registered:
        ensure_metastore_database(settings)
    current = registered_location(spark, target.name)
    if current is None or not _same_location(current, location):
        _create(spark, f"CREATE SCHEMA IF NOT EXISTS `{target.layer}`")
        if current is not None:
            catalog, identifier = _metadata_catalog(spark, target.name)
            catalog.dropTable(identifier, True, False)  # if it exists; no purge: an external table's data stays
        _create(spark, f"CREATE TABLE {_quoted(target.name)} USING DELTA LOCATION '{location}'")
    _registered[target.name] = location


def _create(spark: SparkSession, statement: str) -> None:
    """Run a CREATE; one that another process ran first is done (the jobs and the streaming driver start together,
    and IF NOT EXISTS checks before it creates)."""
    try:
        spark.sql(statement)
    except AnalysisException as error:
        if not (error.getCondition() or "").endswith("ALREADY_EXISTS"):
            raise

