"""The SQL endpoint (Thrift JDBC and Spark Connect, one driver) and `lakehouse sql`, on the session's metastore."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pyhive import hive
from pyhive.exc import OperationalError

from lakehouse import delta
from lakehouse.postgres import connect
from lakehouse.settings import Settings
from lakehouse.tables import table
from orchestration.stack import Stack
from tests.support import prices_frame, write_prices

pytestmark = pytest.mark.integration

AS_JSON = "SELECT to_json(struct(*)) AS row FROM gold.prices"


def _delta_rows(spark, lake: Settings) -> list[str]:
    frame = delta.read_delta(spark, table("gold.prices").location(lake))
    return sorted(r[0] for r in frame.selectExpr("to_json(struct(*))").collect())


def _thrift(settings: Settings, statement: str) -> list[tuple]:
    with hive.connect(host=settings.sql_host, port=settings.sql_thrift_port, username="tests") as connection:
        cursor = connection.cursor()
        cursor.execute(statement)
        return cursor.fetchall()


def _cli(*args: str) -> subprocess.CompletedProcess:
    """`lakehouse sql` in another process, as a user runs it: Spark Connect from a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "orchestration.cli", "sql", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def lake(spark, settings, tmp_path_factory) -> Settings:
    """gold.prices of a lake of its own, registered by its write."""
    own = Settings(state_dir=tmp_path_factory.mktemp("sql_lake"), jars_dir=settings.jars_dir)
    write_prices(spark, own, prices_frame(4, 9.99))
    return own


def test_jdbc_and_spark_connect_return_the_delta_tables_rows_and_see_a_new_version_without_restart(
        spark, lake, sql_endpoint):
    assert sorted(row for (row,) in _thrift(sql_endpoint, AS_JSON)) == _delta_rows(spark, lake)
    answer = _cli("--format", "json", AS_JSON)
    assert answer.returncode == 0, answer.stderr
    assert sorted(r["row"] for r in json.loads(answer.stdout)) == _delta_rows(spark, lake)

    write_prices(spark, lake, prices_frame(6, 12.5))  # a job's new version
    assert len(_delta_rows(spark, lake)) == 6
    assert sorted(row for (row,) in _thrift(sql_endpoint, AS_JSON)) == _delta_rows(spark, lake)


def test_bad_statements_get_the_errors_class_and_message_and_nothing_hangs(lake, sql_endpoint):
    malformed = _cli("SELEC 1")
    assert (malformed.returncode, malformed.stdout) == (1, "")
    assert "error: [PARSE_SYNTAX_ERROR] Syntax error at or near 'SELEC'" in malformed.stderr
    missing = _cli("SELECT * FROM gold.no_such_table")
    assert (missing.returncode, missing.stdout) == (1, "")
    assert "error: [TABLE_OR_VIEW_NOT_FOUND] The table or view `gold`.`no_such_table` cannot be found" in (
        missing.stderr)
    with pytest.raises(OperationalError, match="TABLE_OR_VIEW_NOT_FOUND"):
        _thrift(sql_endpoint, "SELECT * FROM gold.no_such_table")
    with pytest.raises(OperationalError, match="PARSE_SYNTAX_ERROR"):
        _thrift(sql_endpoint, "SELEC 1")


def test_the_catalog_lives_in_postgresql_and_survives_a_restart_of_the_endpoint(spark, lake, sql_endpoint):
    with connect(sql_endpoint.model_copy(update={"pg_database": sql_endpoint.metastore_database})) as metastore:
        # A Spark data source table keeps its location in its storage's `path` parameter.
        tables = metastore.execute(
            'SELECT d."NAME", t."TBL_NAME", p."PARAM_VALUE" FROM "TBLS" t JOIN "DBS" d USING ("DB_ID") JOIN "SDS" s '
            'USING ("SD_ID") JOIN "SERDE_PARAMS" p ON p."SERDE_ID" = s."SERDE_ID" AND p."PARAM_KEY" = %s '
            'WHERE t."TBL_NAME" = %s', ("path", "prices"))
        assert tables.fetchall() == [("gold", "prices", f"file:{table('gold.prices').location(lake)}")]
    endpoint = Stack(sql_endpoint, only=["sql"])
    assert endpoint.down() == ["sql"]
    endpoint.up()
    assert sorted(row for (row,) in _thrift(sql_endpoint, AS_JSON)) == _delta_rows(spark, lake)


def test_dbt_spark_builds_a_model_on_the_tables_by_name_over_the_thrift_method(spark, lake, sql_endpoint, tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "dbt_project.yml").write_text("name: lakehouse_check\nversion: '1.0'\nprofile: lakehouse\n")
    (tmp_path / "profiles.yml").write_text(
        "lakehouse:\n  target: local\n  outputs:\n    local:\n      type: spark\n      method: thrift\n"
        f"      host: {sql_endpoint.sql_host}\n      port: {sql_endpoint.sql_thrift_port}\n      user: dbt\n"
        "      schema: analytics\n      connect_retries: 2\n      connect_timeout: 10\n")
    (tmp_path / "models" / "skus_priced.sql").write_text("select sku, price_usd from gold.prices")
    dbt = subprocess.run([f"{sys.prefix}/bin/dbt", "run", "--profiles-dir", str(tmp_path)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert dbt.returncode == 0, dbt.stdout[-3000:]
    expected = delta.read_delta(spark, table("gold.prices").location(lake)).select("sku", "price_usd").collect()
    assert sorted(_thrift(sql_endpoint, "SELECT sku, price_usd FROM analytics.skus_priced")) == sorted(
        tuple(r) for r in expected)
