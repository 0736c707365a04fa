"""The one SparkSession factory: Delta Lake configured, Maven-resolved jars, tuned for 2 cores."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession

from lakehouse.catalog import hive_conf_dir, write_hive_site
from lakehouse.log import log_file
from lakehouse.settings import REPO_ROOT, Settings, get_settings

LOG4J_CONFIG = REPO_ROOT / "infra" / "spark" / "log4j2.properties"


class MissingJarsError(RuntimeError):
    """The JVM jars have not been resolved yet."""


def spark_jars(settings: Settings) -> list[str]:
    """Local paths of the extra jars (Delta, Kafka connector, S3A) resolved by infra/resolve-jars.sh."""
    jars = sorted(str(p) for p in (settings.jars_dir / "spark").glob("*.jar"))
    if not jars:
        raise MissingJarsError(
            f"no jars in {settings.jars_dir / 'spark'}: run `make jars` (Maven resolves infra/pom.xml)"
        )
    return jars


def s3a_options(settings: Settings) -> dict[str, str]:
    """Spark options for `s3a://` tables on the S3-compatible endpoint of the settings (none without one)."""
    if not settings.s3_endpoint:
        return {}
    return {
        "spark.hadoop.fs.s3a.endpoint": settings.s3_endpoint,
        # MinIO and s3proxy serve buckets by path, not by virtual host.
        "spark.hadoop.fs.s3a.path.style.access": "true",
        # Credentials only from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY of the driver's and the executors'
        # environment: never in a Spark option, where the UI and the event log would show them.
        "spark.hadoop.fs.s3a.aws.credentials.provider":
            "software.amazon.awssdk.auth.credentials.EnvironmentVariableCredentialsProvider",
    }


def driver_java_options(settings: Settings, log_to: Path | None) -> str:
    """The driver JVM's options: where Spark's own log goes (infra/spark/log4j2.properties):
    with a log file, warnings go there and a person's console sees errors only; a JSON console (a service's log,
    or LAKEHOUSE_LOG_FORMAT=json) gets the warnings as JSON lines."""
    if settings.log_format == "json":
        console = {"text": "off", "json": "warn"}
    else:
        console = {"text": "error" if log_to else "warn", "json": "off"}
    return " ".join([
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        *([f"-Dlakehouse.log.file={log_to}"] if log_to else []),
        *(f"-Dlakehouse.log.console.{kind}={level}" for kind, level in console.items()),
    ])


def spark_options(settings: Settings, log_to: Path | None) -> dict[str, str]:
    """The Spark configuration of every driver of the project (the jobs' sessions and the SQL endpoint): Delta, the
    Hive catalog in PostgreSQL (lakehouse.catalog), the jars, tuned for 2 cores."""
    jars = spark_jars(settings)
    class_path = [str(hive_conf_dir(settings))] if settings.catalog_enabled else []
    options = {
        "spark.master": settings.spark_master_url,
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        # Tables by name (`gold.prices`) from the metastore every JVM shares.
        "spark.sql.catalogImplementation": "hive" if settings.catalog_enabled else "in-memory",
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        "spark.default.parallelism": str(settings.spark_shuffle_partitions),
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.sql.inMemoryColumnarStorage.compressed": str(settings.spark_cache_compressed).lower(),
        "spark.ui.enabled": str(settings.spark_ui_enabled).lower(),
        "spark.ui.showConsoleProgress": "false",
        # All timestamps are stored and compared in UTC, whatever the machine's zone.
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.warehouse.dir": str(settings.state_dir / "warehouse"),
        "spark.driver.extraJavaOptions": driver_java_options(settings, log_to),
        # Delta's own defaults for small local tables: no automatic compaction thresholds to tune here.
        "spark.databricks.delta.snapshotPartitions": str(settings.spark_shuffle_partitions),
        **s3a_options(settings),
    }
    # The driver runs here (client mode): the jars go on its class path, where the Hive client's isolated class
    # loader finds the metastore's JDBC driver (it does not see `spark.jars`). In local mode that is all: `spark.jars`
    # would copy each jar (the AWS SDK bundle alone is 640 MB) into a temporary folder per session, which costs
    # seconds at every start and is left behind in /tmp by every killed process.
    class_path += jars
    if not settings.spark_master_url.startswith("local"):
        # Executors on other machines fetch the jars from the driver, so nothing is installed on workers.
        options["spark.jars"] = ",".join(jars)
    # hive-site.xml is read from the driver's class path: the metastore's password is on no command line.
    options["spark.driver.extraClassPath"] = os.pathsep.join(class_path)
    return options


def get_spark(app_name: str, settings: Settings | None = None) -> SparkSession:
    """Return the process's SparkSession, creating it on first call.

    Local mode by default; SPARK_MASTER_URL points it at a standalone cluster. Spark builds one
    session per process, so the first caller's settings win.
    """
    settings = settings or get_settings()
    # pandas-on-Spark (used by pyspark.testing and toPandas paths) asks for this before the JVM starts.
    os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")
    if settings.catalog_enabled:
        write_hive_site(settings)
    builder = SparkSession.builder.appName(app_name)
    for key, value in spark_options(settings, log_file()).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


@dataclass
class JobProfile:
    """The Spark jobs a block of driver code ran: how many, and the wall time during which at least one ran
    (`spark_s`); the rest of the block's time (`outside_spark_s`) is the driver's own: Python, planning,
    Delta commits, waiting on services."""

    seconds: float = 0.0
    spark_jobs: int = 0
    spark_s: float = 0.0

    @property
    def outside_spark_s(self) -> float:
        return max(self.seconds - self.spark_s, 0.0)

    def as_json(self) -> dict:
        return {"spark_jobs": self.spark_jobs, "spark_s": round(self.spark_s, 1),
                "outside_spark_s": round(self.outside_spark_s, 1)}


@contextmanager
def profiled(spark: SparkSession | None) -> Iterator[JobProfile]:
    """Fill the JobProfile it yields with the Spark jobs submitted while the block ran, from any thread (a job
    group would miss a step's worker threads), read from the driver's status store when the block ends
    (Spark keeps it with or without its UI; the latest `spark.ui.retainedJobs`, 1,000 by default). Blocks that
    run one at a time in the process, as pipeline steps do, each get their own jobs."""
    profile, started, started_ms = JobProfile(), time.monotonic(), int(time.time() * 1000)
    try:
        yield profile
    finally:
        profile.seconds = time.monotonic() - started
        if spark is not None:
            ended_ms, context = int(time.time() * 1000), spark.sparkContext
            intervals = []
            store = context._jsc.sc().statusStore()
            for job in context._jvm.scala.jdk.javaapi.CollectionConverters.asJava(store.jobsList(None)):
                if not job.submissionTime().isDefined():
                    continue
                submitted = job.submissionTime().get().getTime()
                if started_ms <= submitted <= ended_ms:
                    done = job.completionTime().get().getTime() if job.completionTime().isDefined() else ended_ms
                    intervals.append((submitted, done))
            profile.spark_jobs = len(intervals)
            profile.spark_s = _covered_ms(intervals) / 1000


def _covered_ms(intervals: list[tuple[int, int]]) -> int:
    """The length of the union of [start, end] intervals."""
    covered, reach = 0, None
    for start, end in sorted(intervals):
        if reach is None or start > reach:
            covered += end - start
            reach = end
        elif end > reach:
            covered += end - reach
            reach = end
    return covered
