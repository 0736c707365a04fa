from pathlib import Path

import pytest
from pydantic import ValidationError

from lakehouse.settings import Settings


def test_environment_names_override_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker-a:19092,broker-b:19092")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5001")
    monkeypatch.setenv("SPARK_MASTER_URL", "spark://master:7077")
    monkeypatch.setenv("LAKEHOUSE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("STACK", "docker")

    settings = Settings()

    assert settings.stack == "docker"
    assert settings.kafka_host_port == ("broker-a", 19092)
    assert settings.mlflow_host_port == ("mlflow", 5001)
    assert settings.spark_master_url == "spark://master:7077"
    assert settings.lake_root == str(tmp_path / "lake")
    assert settings.landing_dir == tmp_path / "landing"


def test_storage_root_wins_over_the_state_folder(monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_STORAGE_ROOT", "s3a://lakehouse/lake")
    assert Settings().lake_root == "s3a://lakehouse/lake"


def test_relative_state_dir_is_made_absolute(monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_STATE_DIR", "some/where")
    assert Settings().state_dir == (Path.cwd() / "some" / "where").resolve()


def test_invalid_stack_is_refused(monkeypatch):
    monkeypatch.setenv("STACK", "kubernetes")
    with pytest.raises(ValidationError, match="native"):
        Settings()
