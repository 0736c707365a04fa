"""Test session set-up: an isolated state folder and free ports, one SparkSession, the real stack on demand.

The environment is set before any project module reads its settings, so every `get_settings()` in the
code under test sees the test values. A running `make up` stack is never touched.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

_STACK = pytest.StashKey()

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_STATE_DIR = Path(tempfile.mkdtemp(prefix="lakehouse-test-"))
os.environ.update({
    "LAKEHOUSE_STATE_DIR": str(_STATE_DIR),
    "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{_free_port()}",
    "LAKEHOUSE_KAFKA_CONTROLLER_PORT": str(_free_port()),
    "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_free_port()}",
    "LAKEHOUSE_SPARK_UI_ENABLED": "false",
    "LAKEHOUSE_SPARK_SHUFFLE_PARTITIONS": "2",
    # Room for a whole simulated pipeline late in a long session (1g ran out of execution memory there).
    "LAKEHOUSE_SPARK_DRIVER_MEMORY": "2g",
})
for _name in ("STACK", "SPARK_MASTER_URL", "LAKEHOUSE_STORAGE_ROOT"):
    os.environ.pop(_name, None)

from lakehouse.settings import Settings, get_settings  # noqa: E402  (after the environment is set)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def spark(settings):
    """One local SparkSession with Delta for the whole run (start-up costs seconds)."""
    from lakehouse.spark import get_spark

    session = get_spark("tests", settings)
    yield session
    session.stop()


def _wants_integration(config: pytest.Config) -> bool:
    return "not integration" not in (config.getoption("markexpr") or "")


def pytest_configure(config: pytest.Config) -> None:
    # Kafka and MLflow take tens of seconds to come up: launch them now, so that they start while the
    # Spark tests run, and let the `stack` fixture wait for their health.
    if _wants_integration(config):
        from lakehouse.stack import Stack

        # The streaming service is a Spark driver: tests/streaming start it on their own state folder.
        config.stash[_STACK] = Stack(get_settings(), only=["kafka", "mlflow"])
        config.stash[_STACK].start()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _STACK in config.stash:
        config.stash[_STACK].down()
    shutil.rmtree(_STATE_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def stack(pytestconfig):
    """The real Kafka broker and MLflow server of the test session, healthy."""
    if _STACK not in pytestconfig.stash:
        pytest.skip("integration tests deselected")
    running = pytestconfig.stash[_STACK]
    running.wait_healthy()
    return running


# A small simulated market: big enough for the models to learn price responses, small enough for CI.
SIMULATION = dict(skus=150, days=40, scale=3.0)


def run_simulated_pipeline(spark, settings: Settings, state_dir: Path, seed: int) -> tuple[Settings, dict]:
    """Simulate a market into `state_dir` and run the whole batch pipeline on it (ingest ... score)."""
    from lakehouse.pipeline import run_pipeline
    from simulator.config import SimConfig
    from simulator.generate import generate

    own = Settings(state_dir=state_dir, jars_dir=settings.jars_dir)
    spark.catalog.clearCache()  # whatever earlier tests left cached is not this pipeline's memory
    generate(SimConfig(seed=seed, **SIMULATION), own.landing_dir, own.truth_dir)
    return own, run_pipeline(spark, own)


@pytest.fixture(scope="session")
def simulated_lake(stack, spark, settings, tmp_path_factory) -> tuple[Settings, dict]:
    """Seed 7 through the whole pipeline, models registered in the test session's MLflow; shared by the
    model and API tests. Returns the lake's settings and the pipeline summary."""
    return run_simulated_pipeline(spark, settings, tmp_path_factory.mktemp("simulated_lake"), seed=7)
