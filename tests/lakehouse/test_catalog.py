"""The catalog: tables by name in the metastore kept in the test session's PostgreSQL."""

from __future__ import annotations

import shutil
import stat

import pytest
from pyspark.testing import assertDataFrameEqual

from lakehouse import delta
from lakehouse.catalog import hive_conf_dir, metastore_properties, registered_location, write_hive_site
from lakehouse.settings import Settings
from lakehouse.spark import spark_options
from lakehouse.tables import table

pytestmark = pytest.mark.integration


def test_the_metastore_password_is_in_a_private_file_and_on_no_command_line(tmp_path, settings):
    own = Settings(state_dir=tmp_path, jars_dir=settings.jars_dir, pg_password="s3cret-pw")
    write_hive_site(own)
    site = hive_conf_dir(own) / "hive-site.xml"
    assert stat.S_IMODE(site.stat().st_mode) == 0o600
    assert "<name>javax.jdo.option.ConnectionPassword</name><value>s3cret-pw</value>" in site.read_text()
    assert metastore_properties(own)["javax.jdo.option.ConnectionURL"] == (
        f"jdbc:postgresql://127.0.0.1:{own.pg_port}/metastore")
    options = spark_options(own, None)
    assert not any("s3cret-pw" in value for value in options.values())
    assert options["spark.driver.extraClassPath"].split(":")[0] == str(hive_conf_dir(own))


def test_a_write_registers_the_table_by_name_and_follows_it_to_another_lake(spark, settings, tmp_path):
    first, second = (Settings(state_dir=tmp_path / name, jars_dir=settings.jars_dir) for name in ("a", "b"))
    target = table("ops.schema_drift")
    rows = spark.createDataFrame([("silver.products", "new_field", 3)], "table string, kind string, rows long")
    delta.create(rows, target, first)
    delta.append(rows, target, first)  # registered once: a second write changes nothing in the metastore
    assert registered_location(spark, target.name) == f"file:{target.location(first)}"
    assertDataFrameEqual(spark.table(target.name), rows.union(rows))

    delta.create(rows, target, second)
    assert registered_location(spark, target.name) == f"file:{target.location(second)}"
    assertDataFrameEqual(spark.table(target.name), rows)
    # The first lake's data is still there: the metastore's tables are external.
    assertDataFrameEqual(delta.read_delta(spark, target.location(first)), rows.union(rows))


def test_a_name_left_pointing_at_storage_that_is_gone_is_pointed_at_the_new_lake(spark, settings, tmp_path):
    # Another lake took the name, then went away (an S3 test lake, a deleted folder): registering must not open it.
    gone, kept = (Settings(state_dir=tmp_path / name, jars_dir=settings.jars_dir) for name in ("gone", "kept"))
    target = table("ops.silver_progress")
    rows = spark.createDataFrame([("bronze.products", 7)], "bronze_table string, bronze_version long")
    delta.create(rows, target, gone)
    shutil.rmtree(gone.lake_root)
    delta.create(rows, target, kept)
    assert registered_location(spark, target.name) == f"file:{target.location(kept)}"
    assertDataFrameEqual(spark.table(target.name), rows)
