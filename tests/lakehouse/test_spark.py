import json
import os
import subprocess
import sys
import threading

import pytest
from pyspark.testing import assertDataFrameEqual

from lakehouse.catalog import hive_conf_dir
from lakehouse.settings import Settings
from lakehouse.spark import (
    LOG4J_CONFIG,
    MissingJarsError,
    driver_java_options,
    profiled,
    s3a_options,
    spark_jars,
    spark_options,
)

# delta-rs can abort the interpreter at exit (delta-io/delta-rs#2184), so the independent reader runs in
# its own process and leaves with os._exit once it has printed its answer.
_DELTA_RS_READ = """
import json, os, sys
from deltalake import DeltaTable
table = DeltaTable(sys.argv[1])
rows = sorted(table.to_pyarrow_table().to_pylist(), key=lambda r: r["sku"])
print(json.dumps({"version": table.version(), "rows": rows}))
sys.stdout.flush()
os._exit(0)
"""


def test_session_is_configured_for_delta_in_utc(spark, settings):
    conf = spark.sparkContext.getConf()
    assert conf.get("spark.sql.extensions") == "io.delta.sql.DeltaSparkSessionExtension"
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.conf.get("spark.sql.shuffle.partitions") == str(settings.spark_shuffle_partitions)
    assert conf.get("spark.ui.enabled") == "false"
    # Local mode: the jars are on the driver's class path, not copied per session by `spark.jars`; before them, the
    # folder of the metastore's hive-site.xml.
    assert conf.get("spark.driver.extraClassPath").split(os.pathsep) == [
        str(hive_conf_dir(settings)), *spark_jars(settings)]
    assert conf.get("spark.sql.catalogImplementation") == "hive"
    assert conf.get("spark.jars", None) is None


def test_delta_round_trip_time_travel_and_independent_reader(spark, tmp_path):
    path = str(tmp_path / "prices")
    first = spark.createDataFrame([("SKU-000001", 9.99), ("SKU-000002", 19.5)], "sku string, price double")
    first.write.format("delta").save(path)
    second = spark.createDataFrame([("SKU-000003", 5.25)], "sku string, price double")
    second.write.format("delta").mode("append").save(path)

    assertDataFrameEqual(spark.read.format("delta").load(path), first.unionByName(second))
    assertDataFrameEqual(spark.read.format("delta").option("versionAsOf", 0).load(path), first)

    answer = subprocess.run([sys.executable, "-c", _DELTA_RS_READ, path],
                            check=True, capture_output=True, text=True, timeout=120)
    assert json.loads(answer.stdout) == {
        "version": 1,
        "rows": [{"sku": "SKU-000001", "price": 9.99}, {"sku": "SKU-000002", "price": 19.5},
                 {"sku": "SKU-000003", "price": 5.25}],
    }


def test_missing_jars_are_reported_with_the_fix(tmp_path):
    with pytest.raises(MissingJarsError, match="make jars"):
        spark_jars(Settings(jars_dir=tmp_path))


def test_s3a_options_point_at_the_endpoint_by_path_with_credentials_from_the_environment_only():
    options = s3a_options(Settings(s3_endpoint="http://127.0.0.1:9000", storage_root="s3a://lake/warehouse"))
    assert options == {
        "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:9000",
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.aws.credentials.provider":
            "software.amazon.awssdk.auth.credentials.EnvironmentVariableCredentialsProvider",
    }
    assert s3a_options(Settings(s3_endpoint=None)) == {}


def test_the_driver_log_goes_to_the_log_file_and_the_console_the_settings_ask_for(tmp_path):
    human, json_console = Settings(state_dir=tmp_path), Settings(state_dir=tmp_path, log_format="json")
    common = f"-Dlog4j2.configurationFile={LOG4J_CONFIG}"
    log = tmp_path / "logs" / "pipeline.log"
    assert driver_java_options(human, log) == (
        f"{common} -Dlakehouse.log.file={log} -Dlakehouse.log.console.text=error -Dlakehouse.log.console.json=off")
    assert driver_java_options(human, None) == (
        f"{common} -Dlakehouse.log.console.text=warn -Dlakehouse.log.console.json=off")
    assert driver_java_options(json_console, None) == (
        f"{common} -Dlakehouse.log.console.text=off -Dlakehouse.log.console.json=warn")


JVM_INCUBATOR_WARNING = "WARNING: Using incubator modules: jdk.incubator.vector"
# A driver as `make pipeline` starts one: its own warnings and a logged one must reach the log file as JSON lines,
# the console only Python's view (the JVM's own "Using incubator modules" line cannot be configured away).
_DRIVER = """
import logging, sys
from lakehouse.log import configure_logging
from lakehouse.catalog import hive_conf_dir
from lakehouse.spark import get_spark
configure_logging("driver.log")
spark = get_spark("log-test")
spark.sparkContext._jvm.org.apache.logging.log4j.LogManager.getLogger("lakehouse.test").warn("a warning")
spark.sparkContext._jvm.org.apache.logging.log4j.LogManager.getLogger("lakehouse.test").error("an error")
spark.stop()
"""


def test_a_driver_s_warnings_go_to_the_log_file_and_only_its_errors_to_the_console(tmp_path, settings):
    env = {**os.environ, "LAKEHOUSE_STATE_DIR": str(tmp_path), "LAKEHOUSE_JARS_DIR": str(settings.jars_dir),
           "LAKEHOUSE_SPARK_UI_ENABLED": "false"}
    env.pop("LAKEHOUSE_LOG_FORMAT", None)
    ran = subprocess.run([sys.executable, "-c", _DRIVER], env=env, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    console = [line for line in ran.stderr.splitlines() if line != JVM_INCUBATOR_WARNING]
    assert [line[18:] for line in console] == ["ERROR test: an error"]  # after the time stamp
    logged = [json.loads(line) for line in (tmp_path / "logs" / "driver.log").read_text().splitlines()]
    assert [(entry["level"], entry["logger"], entry["msg"]) for entry in logged if entry["logger"] == "test"] == [
        ("WARN", "test", "a warning"), ("ERROR", "test", "an error")]
    assert ran.stdout == ""


def test_a_session_without_the_catalog_uses_an_in_memory_one_and_no_metastore_file(settings, tmp_path):
    with_catalog = spark_options(settings.model_copy(update={"state_dir": tmp_path}), None)
    without = spark_options(settings.model_copy(update={"state_dir": tmp_path, "catalog_enabled": False}), None)
    assert with_catalog["spark.sql.catalogImplementation"] == "hive"
    assert without["spark.sql.catalogImplementation"] == "in-memory"
    metastore_conf = str(hive_conf_dir(settings.model_copy(update={"state_dir": tmp_path})))
    assert with_catalog["spark.driver.extraClassPath"].split(os.pathsep)[0] == metastore_conf
    assert metastore_conf not in without["spark.driver.extraClassPath"].split(os.pathsep)
    differing = ("spark.sql.catalogImplementation", "spark.driver.extraClassPath")
    assert {k: v for k, v in with_catalog.items() if k not in differing} == \
        {k: v for k, v in without.items() if k not in differing}


def test_a_cluster_driver_keeps_the_jars_on_its_class_path_and_ships_them_to_the_executors(settings, tmp_path):
    # The Hive client's class loader finds the metastore's JDBC driver on the class path only, not in spark.jars.
    cluster = settings.model_copy(update={"state_dir": tmp_path, "spark_master_url": "spark://127.0.0.1:7077"})
    options = spark_options(cluster, None)
    assert options["spark.driver.extraClassPath"].split(os.pathsep) == [str(hive_conf_dir(cluster)),
                                                                        *spark_jars(cluster)]
    assert options["spark.jars"].split(",") == spark_jars(cluster)


def test_a_profiled_block_counts_the_spark_jobs_of_every_thread_and_the_time_outside_them(spark):
    spark.range(10).count()  # a job before the block is not the block's
    context = spark.sparkContext
    context.setJobGroup("test:main", "")  # groups only to count the block's jobs Spark's own way, below

    with profiled(spark) as profile:
        spark.range(1000).count()
        worker = threading.Thread(target=lambda: (context.setJobGroup("test:worker", ""), spark.range(10).collect()))
        worker.start()
        worker.join()
    context._jsc.clearJobGroup()
    with profiled(spark) as idle:
        pass

    tracker = context.statusTracker()
    assert profile.spark_jobs == len(tracker.getJobIdsForGroup("test:main")) + len(tracker.getJobIdsForGroup(
        "test:worker")) >= 2
    assert 0 < profile.spark_s <= profile.seconds
    assert profile.outside_spark_s == pytest.approx(profile.seconds - profile.spark_s)
    assert (idle.spark_jobs, idle.spark_s) == (0, 0.0)
