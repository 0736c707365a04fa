"""docker-compose.yml, checked statically (no Docker engine here) against the native settings and pins."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lakehouse.settings import REPO_ROOT, Settings
from lakehouse.versions import locked, pom_property

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


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
    assert set(SERVICES) == {"kafka", "minio", "minio-init", "spark-master", "spark-worker", "mlflow", "api"}


@pytest.mark.parametrize(("service", "ports"), [
    ("kafka", ["9092:9092"]),
    ("mlflow", ["5000:5000"]),
    ("api", ["8000:8000"]),
    ("minio", ["9000:9000", "9001:9001"]),
    ("spark-master", ["7077:7077", "8080:8080"]),
])
def test_ports_are_the_native_ones(service, ports):
    assert SERVICES[service]["ports"] == ports


def test_native_defaults_use_the_same_ports(monkeypatch):
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "MLFLOW_TRACKING_URI", "LAKEHOUSE_API_PORT"):
        monkeypatch.delenv(name, raising=False)
    defaults = Settings(_env_file=None)
    assert defaults.kafka_host_port[1] == 9092
    assert defaults.mlflow_host_port[1] == 5000
    assert defaults.api_port == 8000


def test_api_environment_uses_only_names_the_settings_know():
    known = _settings_env_names() | {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"}
    assert set(SERVICES["api"]["environment"]) - known == set()
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
