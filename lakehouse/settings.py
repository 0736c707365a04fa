"""The one settings object. Every path, host and port of the project comes from here.

Values come from the environment (names below), then `.env` in the repository root, then defaults
for the native stack on loopback. The Compose stack sets the same names to its service addresses.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Validated at start-up; `get_settings()` returns the process-wide instance."""

    model_config = SettingsConfigDict(
        env_prefix="LAKEHOUSE_", env_file=REPO_ROOT / ".env", extra="ignore", frozen=True,
        # Settings(pg_port=...) as well as the PGPORT alias (tests build the settings of their own lakes)
        populate_by_name=True,
    )

    stack: Literal["native", "docker"] = Field(
        "native", validation_alias=AliasChoices("STACK", "LAKEHOUSE_STACK")
    )
    state_dir: Path = REPO_ROOT / ".state"
    jars_dir: Path = REPO_ROOT / ".cache" / "jars"
    # Where Delta tables live: a local folder, or s3a://bucket/prefix on S3-compatible storage.
    storage_root: str | None = None
    # S3-compatible endpoint (MinIO, s3proxy) for s3a:// tables; credentials come from the standard
    # AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY variables, never from a file in the repository.
    s3_endpoint: str | None = None
    # Where the MLflow server stores artifacts: unset is `<state>/mlflow/artifacts`; `s3://bucket/prefix`
    # puts them on the S3 endpoint above (the server gets it as MLFLOW_S3_ENDPOINT_URL).
    mlflow_artifacts_destination: str | None = None

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS")
    )
    kafka_controller_port: int = 9093
    # Topics are `<prefix>.<source>` (shop.transactions, shop.clickstream); tests use their own prefix.
    kafka_topic_prefix: str = "shop"
    # The streaming job's defaults (`python -m streaming.bronze`, the stack's streaming service).
    streaming_trigger_interval: str = "5 seconds"
    streaming_max_offsets_per_trigger: int = 50_000
    # Seconds between the API's polls of the live feature tables: with the repricing after it, the bound on
    # how late a live price follows its features.
    live_features_poll_s: float = Field(5.0, gt=0)
    mlflow_tracking_uri: str = Field(
        "http://127.0.0.1:5000", validation_alias=AliasChoices("MLFLOW_TRACKING_URI")
    )
    # The operational database (PostgreSQL; operational.sync writes gold's synced tables there). libpq's own
    # variable names, so that psql and every PostgreSQL tool read the same ones. The native stack sets the
    # password when it first initialises the database, as the official image does.
    pg_host: str = Field("127.0.0.1", validation_alias=AliasChoices("PGHOST"))
    pg_port: int = Field(5432, validation_alias=AliasChoices("PGPORT"))
    pg_user: str = Field("lakehouse", validation_alias=AliasChoices("PGUSER"))
    pg_password: SecretStr = Field(SecretStr("lakehouse"), validation_alias=AliasChoices("PGPASSWORD"))
    pg_database: str = Field("lakehouse", validation_alias=AliasChoices("PGDATABASE"))
    # The Hive metastore (lakehouse.catalog): a database of that PostgreSQL server, shared by every Spark JVM.
    metastore_database: str = "metastore"
    # Tables by name in that metastore. The benchmarks turn it off: their temporary lakes must not take the stack's
    # names, nor need its PostgreSQL.
    catalog_enabled: bool = True
    # The SQL endpoint (one Spark driver): JDBC/ODBC through the Thrift server, and Spark Connect.
    sql_host: str = "127.0.0.1"
    sql_thrift_port: int = 10000
    spark_connect_port: int = 15002
    sql_endpoint_memory: str = "1g"
    # The pipeline driver (orchestration.driver): one Spark driver kept warm that runs the steps sent to it, one at a
    # time (the Airflow DAG's tasks, `lakehouse pipeline` when it is up); it exits after this many idle seconds (0:
    # never), so that its memory is held only around a run.
    pipeline_driver_host: str = "127.0.0.1"
    pipeline_driver_port: int = 8790
    pipeline_driver_idle_s: float = Field(1800.0, ge=0)
    # JupyterLab (`make notebook`); its token is in <state>/jupyter/token.
    jupyter_host: str = "127.0.0.1"
    jupyter_port: int = 8888
    # The server programs of Debian's postgresql package (`make postgres` installs it) for the native stack.
    postgres_bin_dir: Path = Path("/usr/lib/postgresql/15/bin")
    spark_master_url: str = Field("local[2]", validation_alias=AliasChoices("SPARK_MASTER_URL"))
    spark_shuffle_partitions: int = 4
    spark_driver_memory: str = "2g"
    # Cached DataFrames (a promotion batch) compressed in memory. Off trades memory for time: 13.6M clickstream
    # events cache in 33-39 s instead of 50-69 s, but take 4.4 GB instead of 1.3 GB; only with the driver memory
    # to hold them (beyond it, Spark spills the cache to disk).
    spark_cache_compressed: bool = True
    # The Spark UI costs start-up time and a port per session; tests turn it off.
    spark_ui_enabled: bool = True

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # Gateway limits (serving.gateway): a token bucket per API key refilled at `rate` requests/s and
    # holding at most `burst`; request bodies above `api_max_body_bytes` are refused with 413.
    api_rate_limit_per_s: float = Field(500.0, gt=0)
    api_rate_limit_burst: int = Field(1000, ge=1)
    api_max_body_bytes: int = Field(64 * 1024, ge=1)
    # Feature-flag experiments of the API; reloaded when the file changes.
    api_experiments_file: Path = REPO_ROOT / "serving" / "experiments.yaml"
    # Decision records waiting for Kafka; when full, new records are dropped and counted.
    decision_log_queue_size: int = Field(10_000, ge=1)
    # Seconds between checks of the online feature tables' Delta versions.
    online_features_refresh_s: float = Field(30.0, gt=0)
    # Seconds between checks of the registered models' aliases (a moved alias is served without restart).
    api_model_refresh_s: float = Field(15.0, gt=0)

    # Carrier quotes (serving.carrier_quotes): each carrier's quote service by base URL (env: a JSON object;
    # a carrier without one is priced from its rate card). A shipping estimate waits at most `budget_ms` for
    # all its quotes together; each attempt at most `timeout_ms`, retried `retries` times after a backoff of
    # `backoff_ms`, doubling. `breaker_failures` failed quotes in a row open a carrier's circuit breaker for
    # `breaker_reset_s`. A quote is kept `cache_ttl_s` as the fallback when its carrier fails.
    carrier_quote_urls: dict[str, str] = Field(default_factory=dict)
    carrier_quote_budget_ms: float = Field(150.0, gt=0)
    carrier_quote_timeout_ms: float = Field(100.0, gt=0)
    carrier_quote_retries: int = Field(1, ge=0)
    carrier_quote_backoff_ms: float = Field(10.0, ge=0)
    carrier_breaker_failures: int = Field(5, ge=1)
    carrier_breaker_reset_s: float = Field(10.0, ge=0)
    carrier_quote_cache_ttl_s: float = Field(900.0, ge=0)

    # Monitoring alerts (spark_jobs.monitor): PagerDuty Events v2 events are POSTed to this URL (unset:
    # logged as not sent) with this routing key (PagerDuty's integration key; any string for other receivers).
    alert_webhook_url: str | None = None
    alert_routing_key: str = "lakehouse-local"
    alert_timeout_s: float = Field(10.0, gt=0)

    # Promotion of the pricing model (`lakehouse promote`): also require that the challenger's off-policy
    # estimate from the decision log (`lakehouse ope`) passed its gate. Off by default: a new lake has no
    # decision log until the API has served traffic. The gate (readout.ope.promotable): the challenger's
    # doubly robust value, less `ope_z` standard errors, at least (1 + `ope_min_lift`) x the champion's.
    promote_requires_ope: bool = False
    ope_min_lift: float = 0.0
    ope_z: float = Field(1.645, ge=0)

    # Seconds `lakehouse stack up` waits for a service to answer its health check.
    health_timeout_s: float = 90.0
    # The console of every CLI, job and service (lakehouse.log): `human` shows warnings and one line per stage,
    # `json` the JSON lines the log files hold (the stack sets it for its services, whose stderr is their log).
    log_format: Literal["human", "json"] = "human"

    @field_validator("state_dir", "jars_dir", "api_experiments_file", "postgres_bin_dir")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        return path.expanduser().resolve()

    @property
    def lake_root(self) -> str:
        """Root of all Delta tables (bronze/silver/gold folders below it)."""
        return self.storage_root or str(self.state_dir / "lake")

    @property
    def landing_dir(self) -> Path:
        """Landing zone the simulator writes and batch ingestion reads."""
        return self.state_dir / "landing"

    @property
    def truth_dir(self) -> Path:
        """The simulator's ground truth, for evaluation only: the pipeline never reads it."""
        return self.state_dir / "truth"

    @property
    def checkpoints_dir(self) -> Path:
        return self.state_dir / "checkpoints"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def bootstrap_marker(self) -> Path:
        """Written once the first `make up` simulated the default data set and ran the pipeline."""
        return self.state_dir / "bootstrap.json"

    @property
    def run_dir(self) -> Path:
        """Pid files of the native stack."""
        return self.state_dir / "run"

    @property
    def kafka_host_port(self) -> tuple[str, int]:
        """Host and port of the first bootstrap server (the native broker listens there)."""
        host, _, port = self.kafka_bootstrap_servers.split(",")[0].rpartition(":")
        return host, int(port)

    @property
    def sql_jdbc_url(self) -> str:
        """The SQL endpoint for JDBC clients (beeline, DBeaver) and dbt-spark's thrift method."""
        return f"jdbc:hive2://{self.sql_host}:{self.sql_thrift_port}/default"

    @property
    def spark_connect_url(self) -> str:
        """The SQL endpoint for `SparkSession.builder.remote(...)`."""
        return f"sc://{self.sql_host}:{self.spark_connect_port}"

    @property
    def pipeline_driver_url(self) -> str:
        return f"http://{self.pipeline_driver_host}:{self.pipeline_driver_port}"

    @property
    def mlflow_host_port(self) -> tuple[str, int]:
        url = urlsplit(self.mlflow_tracking_uri)
        return url.hostname or "127.0.0.1", url.port or 80


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
