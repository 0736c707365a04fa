"""docker-compose.yml, checked statically (no Docker engine here) against the native settings and pins."""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from lakehouse.settings import REPO_ROOT, Settings
from lakehouse.versions import locked, pom_property
from orchestration.stack import SERVICES as STACK_SERVICES
from serving.metrics import ServingMetrics

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
SHARED_ENV = COMPOSE["x-lakehouse-env"]


def _settings_env_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names.update(alias.choices if alias is not None else [f"LAKEHOUSE_{name.upper()}"])
    return names


def test_compose_file_is_valid_against_the_compose_spec():
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run([str(checker), "--builtin-schema", "vendor.compose-spec",
                             str(REPO_ROOT / "docker-compose.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_the_services_the_design_names():
    assert set(SERVICES) == {"kafka", "minio", "minio-init", "spark-master", "spark-worker", "mlflow", "api",
                             "postgres", "sql", "pipeline-driver", "jupyter", "prometheus", "grafana"}


@pytest.mark.parametrize(("service", "ports"), [
    ("kafka", ["9092:9092"]),
    ("mlflow", ["5000:5000"]),
    ("api", ["8000:8000"]),
    ("postgres", ["5432:5432"]),
    ("sql", ["10000:10000", "15002:15002"]),
    ("pipeline-driver", ["8790:8790"]),
    ("jupyter", ["8888:8888"]),
    ("minio", ["9000:9000", "9001:9001"]),
    ("spark-master", ["7077:7077", "8080:8080"]),
    ("prometheus", ["9090:9090"]),
    ("grafana", ["3000:3000"]),
])
def test_ports_are_the_native_ones(service, ports):
    assert SERVICES[service]["ports"] == ports


def test_native_defaults_use_the_same_ports(monkeypatch):
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "MLFLOW_TRACKING_URI", "LAKEHOUSE_API_PORT", "PGPORT",
                 "LAKEHOUSE_SQL_THRIFT_PORT", "LAKEHOUSE_SPARK_CONNECT_PORT", "LAKEHOUSE_JUPYTER_PORT",
                 "LAKEHOUSE_PIPELINE_DRIVER_PORT"):
        monkeypatch.delenv(name, raising=False)
    defaults = Settings(_env_file=None)
    assert defaults.kafka_host_port[1] == 9092
    assert defaults.pg_port == 5432
    assert defaults.mlflow_host_port[1] == 5000
    assert defaults.api_port == 8000
    assert (defaults.sql_thrift_port, defaults.spark_connect_port, defaults.jupyter_port) == (10000, 15002, 8888)
    assert defaults.pipeline_driver_port == 8790


@pytest.mark.parametrize("service", ["sql", "pipeline-driver", "jupyter"])
def test_the_sql_endpoint_the_pipeline_driver_and_jupyter_run_the_native_stacks_service_in_the_foreground(service):
    assert SERVICES[service]["command"] == ["lakehouse", "stack", "run", service]
    assert service in STACK_SERVICES
    assert set(SERVICES[service]["environment"]) - _settings_env_names() - STORAGE_ENV == set()
    environment = SERVICES[service]["environment"]
    for name in ("LAKEHOUSE_SQL_THRIFT_PORT", "LAKEHOUSE_SPARK_CONNECT_PORT", "LAKEHOUSE_JUPYTER_PORT",
                 "LAKEHOUSE_PIPELINE_DRIVER_PORT"):
        if name in environment:
            assert f"{environment[name]}:{environment[name]}" in SERVICES[service]["ports"]
    # The metastore is a database of the postgres service, which the SQL endpoint's start creates.
    assert SERVICES["sql"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert SERVICES["pipeline-driver"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    # Its clients find it by its service name; it listens on every interface of its container, never stops idle.
    assert SHARED_ENV["LAKEHOUSE_PIPELINE_DRIVER_HOST"] == "pipeline-driver"
    assert {k: SERVICES["pipeline-driver"]["environment"][k] for k in (
        "LAKEHOUSE_PIPELINE_DRIVER_HOST", "LAKEHOUSE_PIPELINE_DRIVER_IDLE_S")} == {
        "LAKEHOUSE_PIPELINE_DRIVER_HOST": "0.0.0.0", "LAKEHOUSE_PIPELINE_DRIVER_IDLE_S": 0}
    assert SERVICES["jupyter"]["environment"]["LAKEHOUSE_SQL_HOST"] == "sql"


# Read by the AWS SDK and MLflow, not the settings.
STORAGE_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"}


def test_api_environment_uses_only_names_the_settings_know():
    assert set(SERVICES["api"]["environment"]) - _settings_env_names() - STORAGE_ENV == set()
    assert {"KAFKA_BOOTSTRAP_SERVERS", "MLFLOW_TRACKING_URI", "SPARK_MASTER_URL",
            "LAKEHOUSE_STORAGE_ROOT", "LAKEHOUSE_S3_ENDPOINT"} <= set(SERVICES["api"]["environment"])


def test_every_service_has_a_healthcheck_or_is_a_one_shot_job():
    without = {name for name, spec in SERVICES.items() if "healthcheck" not in spec}
    assert without == {"minio-init", "spark-worker"}


def test_images_are_pinned_and_match_the_pinned_versions():
    images = {name: spec["image"] for name, spec in SERVICES.items()}
    assert all(":" in image and not image.endswith(":latest") for image in images.values())
    assert images["spark-master"] == images["spark-worker"]
    spark_image_version = images["spark-master"].split(":")[1].split("-")[0]
    assert spark_image_version == locked("pyspark") == pom_property("spark.version")
    assert images["kafka"] == f"apache/kafka:{pom_property('kafka.broker.version')}"


def test_postgres_image_has_the_major_version_of_the_native_server_and_the_same_credentials(monkeypatch):
    makefile = (REPO_ROOT / "Makefile").read_text()
    major = re.search(r"^POSTGRES_MAJOR := (\d+)$", makefile, re.MULTILINE).group(1)
    assert re.fullmatch(rf"postgres:{major}\.\d+-bookworm", SERVICES["postgres"]["image"])
    for name in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "LAKEHOUSE_POSTGRES_BIN_DIR"):
        monkeypatch.delenv(name, raising=False)
    defaults = Settings(_env_file=None)
    assert defaults.postgres_bin_dir.parts[-2:] == (major, "bin")
    server = SERVICES["postgres"]["environment"]
    assert (server["POSTGRES_USER"], server["POSTGRES_PASSWORD"], server["POSTGRES_DB"]) == (
        SHARED_ENV["PGUSER"], SHARED_ENV["PGPASSWORD"], SHARED_ENV["PGDATABASE"])
    assert SHARED_ENV["PGUSER"] == f"${{PGUSER:-{defaults.pg_user}}}"
    assert SHARED_ENV["PGPASSWORD"] == f"${{PGPASSWORD:-{defaults.pg_password.get_secret_value()}}}"
    assert SHARED_ENV["PGDATABASE"] == f"${{PGDATABASE:-{defaults.pg_database}}}"
    assert (SHARED_ENV["PGHOST"], SHARED_ENV["PGPORT"]) == ("postgres", defaults.pg_port)


def test_kafka_image_matches_the_broker_jars_the_native_stack_runs(settings):
    version = SERVICES["kafka"]["image"].split(":")[1]
    assert (settings.jars_dir / "kafka" / f"kafka_2.13-{version}.jar").exists()


def test_mlflow_and_api_run_the_project_image_with_the_locked_packages():
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    for service in ("mlflow", "api"):
        assert SERVICES[service]["image"] == f"lakehouse:{version}"
        assert SERVICES[service]["build"] == {"context": ".", "dockerfile": "infra/Dockerfile"}
    dockerfile = (REPO_ROOT / "infra" / "Dockerfile").read_text()
    assert "uv pip sync --system --no-cache requirements.lock" in dockerfile
    # So the server's MLflow is the lock's, with the lock's boto3 for its S3 artifact store.
    assert SERVICES["mlflow"]["command"][:2] == ["mlflow", "server"]
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", locked(package)) for package in ("mlflow", "boto3"))


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_storage_buckets_and_endpoints_agree():
    buckets = set(re.findall(r"local/([a-z0-9-]+)", SERVICES["minio-init"]["entrypoint"][-1]))
    destination = _option(SERVICES["mlflow"]["command"], "--artifacts-destination")
    assert destination == SHARED_ENV["LAKEHOUSE_MLFLOW_ARTIFACTS_DESTINATION"]
    assert {destination.split("/")[2], SHARED_ENV["LAKEHOUSE_STORAGE_ROOT"].split("/")[2]} == buckets
    assert SHARED_ENV["LAKEHOUSE_STORAGE_ROOT"].startswith("s3a://")
    endpoint = SHARED_ENV["LAKEHOUSE_S3_ENDPOINT"]
    mlflow_endpoint = SERVICES["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"]
    assert SHARED_ENV["MLFLOW_S3_ENDPOINT_URL"] == mlflow_endpoint == endpoint
    assert endpoint == f"http://minio:{SERVICES['minio']['ports'][0].split(':')[1]}"
    # Every container that touches S3 gets the same credentials, from the environment of `docker compose`.
    for service in ("mlflow", "spark-worker"):
        environment = SERVICES[service]["environment"]
        assert {k: environment[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")} == {
            k: SHARED_ENV[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}


def test_services_reach_each_other_on_the_ports_they_publish():
    assert SHARED_ENV["MLFLOW_TRACKING_URI"] == f"http://mlflow:{_option(SERVICES['mlflow']['command'], '--port')}"
    master_port = _option(SERVICES["spark-master"]["command"], "--port")
    assert SHARED_ENV["SPARK_MASTER_URL"] == f"spark://spark-master:{master_port}"
    assert SERVICES["spark-worker"]["command"][-1] == SHARED_ENV["SPARK_MASTER_URL"]


def _mounted_sources(service: str) -> list[Path]:
    return [REPO_ROOT / volume.split(":")[0] for volume in SERVICES[service]["volumes"] if volume.startswith("./")]


def test_prometheus_scrapes_the_api_metrics():
    assert all(path.exists() for path in _mounted_sources("prometheus"))
    config = yaml.safe_load((REPO_ROOT / "infra" / "prometheus" / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [{"targets": [f"api:{SERVICES['api']['environment']['LAKEHOUSE_API_PORT']}"]}]


def _exposed_metric_names() -> set[str]:
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {family.name + suffix for family in ServingMetrics().registry.collect()
            for suffix in suffixes[family.type]}


def test_grafana_dashboard_queries_metrics_the_api_exposes_from_the_provisioned_source():
    assert all(path.exists() for path in _mounted_sources("grafana"))
    grafana = REPO_ROOT / "infra" / "grafana"
    [source] = yaml.safe_load((grafana / "provisioning" / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["url"] == f"http://prometheus:{SERVICES['prometheus']['ports'][0].split(':')[1]}"
    dashboard = json.loads((grafana / "dashboards" / "lakehouse-api.json").read_text())
    targets = [t for panel in dashboard["panels"] for t in panel["targets"]]
    assert {t["datasource"]["uid"] for t in targets} == {source["uid"]}
    queried = {name for t in targets for name in re.findall(r"lakehouse_[a-z_]+", t["expr"])}
    assert queried - _exposed_metric_names() == set()
    assert len(queried) == 9


def test_spark_executors_see_the_drivers_state_folder_at_the_same_path():
    # Batch ingestion hands local landing-file paths to the executors.
    mount = f"lakehouse-state:{SHARED_ENV['LAKEHOUSE_STATE_DIR']}"
    assert mount in SERVICES["api"]["volumes"]
    assert mount in SERVICES["spark-worker"]["volumes"]
