"""Test session set-up: an isolated state folder and free ports, one SparkSession, the real stack on demand.

The environment is set before any project module reads its settings, so every `get_settings()` in the
code under test sees the test values. A running `make up` stack is never touched.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import free_port, run_simulated_pipeline

if __name__ != "conftest":  # see tests/support.py
    raise ImportError("import test helpers from tests.support, not from the conftest: a second import of it "
                      "would give the session new ports while its broker and MLflow server keep the old ones")

_STACK = pytest.StashKey()

_STATE_DIR = Path(tempfile.mkdtemp(prefix="lakehouse-test-"))
os.environ.update({
    "LAKEHOUSE_STATE_DIR": str(_STATE_DIR),
    "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
    "LAKEHOUSE_KAFKA_CONTROLLER_PORT": str(free_port()),
    "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
    "PGPORT": str(free_port()),
    "LAKEHOUSE_SQL_THRIFT_PORT": str(free_port()),
    "LAKEHOUSE_SPARK_CONNECT_PORT": str(free_port()),
    "PGPASSWORD": "lakehouse",  # the default: the README's psql line runs as it is (tests/operational)
    "LAKEHOUSE_SPARK_UI_ENABLED": "false",
    "LAKEHOUSE_SPARK_SHUFFLE_PARTITIONS": "2",
    # Room for a whole simulated pipeline late in a long session (1g ran out of execution memory there).
    "LAKEHOUSE_SPARK_DRIVER_MEMORY": "2g",
})
for _name in ("STACK", "SPARK_MASTER_URL", "LAKEHOUSE_STORAGE_ROOT", "PGHOST", "PGUSER", "PGDATABASE"):
    os.environ.pop(_name, None)

# Project modules after the environment is set: their settings are read from it.
from lakehouse.log import MLFLOW_QUIET_ENV  # noqa: E402
from lakehouse.settings import Settings, get_settings  # noqa: E402
from lakehouse.spark import get_spark  # noqa: E402
from orchestration.stack import Stack  # noqa: E402
from simulator.config import SimConfig  # noqa: E402
from simulator.generate import generate  # noqa: E402
from tests.lakehouse.lake_runs import SMALL_SIMULATION, run_batch  # noqa: E402


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def spark(settings):
    """One local SparkSession with Delta for the whole run (start-up costs seconds). Its writes register their
    tables in the metastore (lakehouse.catalog), which lives in the session's PostgreSQL."""
    Stack(settings, only=["postgres"]).wait_healthy()
    session = get_spark("tests", settings)
    yield session
    session.stop()


def _wants_integration(config: pytest.Config) -> bool:
    return "not integration" not in (config.getoption("markexpr") or "")


def _interrupted(signum: int, frame) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def pytest_configure(config: pytest.Config) -> None:
    # A test run stopped with SIGTERM (a CI time-out, `kill`) unwinds as after Ctrl-C: pytest tears the
    # session's fixtures down and unconfigures, so the broker, MLflow and the other servers stop too.
    # Python's default for SIGTERM ends the process at once and leaves them running.
    signal.signal(signal.SIGTERM, _interrupted)
    # Kafka and MLflow take tens of seconds to come up: launch them (and PostgreSQL) now, so that they start while the
    # Spark tests run, and let the `stack` fixture wait for their health. PostgreSQL always: it holds the metastore
    # every Spark write registers its table in.
    # The streaming service is a Spark driver: tests/streaming start it on their own state folder.
    services = ["kafka", "mlflow", "postgres"] if _wants_integration(config) else ["postgres"]
    config.stash[_STACK] = Stack(get_settings(), only=services)
    config.stash[_STACK].start()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _STACK in config.stash:
        config.stash[_STACK].down()
    shutil.rmtree(_STATE_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def stack(pytestconfig):
    """The real Kafka broker, MLflow server and PostgreSQL of the test session, healthy."""
    if not _wants_integration(pytestconfig):
        pytest.skip("integration tests deselected")
    running = pytestconfig.stash[_STACK]
    running.wait_healthy()
    return running


@pytest.fixture(scope="session")
def sql_endpoint(stack, settings) -> Settings:
    """The stack's SQL endpoint (Thrift JDBC and Spark Connect, one Spark driver) on the session's metastore."""
    endpoint = Stack(settings, only=["sql"])
    endpoint.up()
    yield settings
    endpoint.down()


@pytest.fixture(scope="session")
def simulated_lake(stack, spark, settings, tmp_path_factory) -> tuple[Settings, dict]:
    """Seed 7 through the whole pipeline, models registered in the test session's MLflow; shared by the
    model and API tests. Returns the lake's settings and the pipeline summary."""
    return run_simulated_pipeline(spark, settings, tmp_path_factory.mktemp("simulated_lake"), seed=7)


def _wait_for(ready, what: str, log_file: Path, process: subprocess.Popen, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}; read {log_file}")
        if ready():
            return
        time.sleep(0.5)
    raise RuntimeError(f"{what} not ready after {timeout_s:.0f} s; read {log_file}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group started for a fixture, SIGKILL it if it lingers."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _port_answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class S3Server:
    """A real S3-compatible server (s3proxy, filesystem backend) on loopback, with test-only credentials."""

    endpoint: str
    access_key: str = "lakehouse-test"
    secret_key: str = "lakehouse-test-secret"

    @property
    def credentials_env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server(settings, tmp_path_factory) -> S3Server:
    """s3proxy from the Maven-resolved jar (`make jars`), storing objects under a temporary folder."""
    jars = sorted((settings.jars_dir / "s3proxy").glob("s3proxy-*.jar"))
    if not jars:
        raise RuntimeError(f"no s3proxy jar in {settings.jars_dir / 's3proxy'}: run `make jars`")
    home, port = tmp_path_factory.mktemp("s3proxy"), free_port()
    server = S3Server(endpoint=f"http://127.0.0.1:{port}")
    (home / "data").mkdir()
    (home / "s3proxy.properties").write_text("\n".join([
        f"s3proxy.endpoint={server.endpoint}",
        "s3proxy.authorization=aws-v2-or-v4",
        f"s3proxy.identity={server.access_key}",
        f"s3proxy.credential={server.secret_key}",
        "jclouds.provider=filesystem-nio2",
        f"jclouds.filesystem.basedir={home / 'data'}",
        "",
    ]))
    log_file = home / "s3proxy.log"
    with log_file.open("wb") as out:
        process = subprocess.Popen(["java", "-Xmx256m", "-jar", str(jars[-1]), "--properties",
                                    str(home / "s3proxy.properties")],
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for(lambda: _port_answers(port), "s3proxy", log_file, process)
        yield server
    finally:
        _stop(process)


@dataclass(frozen=True)
class SparkCluster:
    master_url: str
    ui_url: str

    def state(self) -> dict:
        """The master's JSON status: workers, active and completed applications."""
        import json
        import urllib.request

        with urllib.request.urlopen(f"{self.ui_url}/json/", timeout=2) as answer:
            return json.load(answer)


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory) -> SparkCluster:
    """A standalone Spark master and one worker (1 core, 1 GiB) from the pyspark distribution on loopback."""
    import pyspark

    home = tmp_path_factory.mktemp("spark_cluster")
    spark_home = Path(pyspark.__file__).parent
    # Daemons bind to loopback only, and keep their work folders out of the virtualenv.
    env = {**os.environ, "SPARK_HOME": str(spark_home), "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_LOCAL_HOSTNAME": "127.0.0.1", "SPARK_WORKER_DIR": str(home / "work"),
           "SPARK_DAEMON_MEMORY": "256m", "PYSPARK_PYTHON": sys.executable}
    master_port, master_ui = free_port(), free_port()
    cluster = SparkCluster(f"spark://127.0.0.1:{master_port}", f"http://127.0.0.1:{master_ui}")
    master_url = cluster.master_url
    spark_class = str(spark_home / "bin" / "spark-class")
    commands = {
        "master": [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                   "--port", str(master_port), "--webui-port", str(master_ui)],
        "worker": [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                   "--port", str(free_port()), "--webui-port", str(free_port()),
                   "--cores", "1", "--memory", "1g", master_url],
    }

    def alive_workers() -> int:
        try:
            return cluster.state()["aliveworkers"]
        except OSError:
            return 0

    processes = []
    try:
        for name, command in commands.items():
            log_file = home / f"{name}.log"
            with log_file.open("wb") as out:
                processes.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                                  start_new_session=True))
            ready = (lambda: _port_answers(master_port)) if name == "master" else (lambda: alive_workers() == 1)
            _wait_for(ready, f"spark {name}", log_file, processes[-1])
        yield cluster
    finally:
        for process in reversed(processes):
            _stop(process)


@pytest.fixture(scope="session")
def batch_reference(settings, tmp_path_factory) -> Settings:
    """A tiny simulated landing zone and its ingest -> silver -> gold lake, run by `lakehouse pipeline` in
    local mode on a local folder: what the S3 and cluster runs of the same landing zone must equal."""
    reference = Settings(state_dir=tmp_path_factory.mktemp("batch_reference"), jars_dir=settings.jars_dir)
    generate(SimConfig(**SMALL_SIMULATION), reference.landing_dir, reference.truth_dir)
    run_batch(reference.state_dir, {})
    return reference


@pytest.fixture
def restored_logging(monkeypatch):
    """For tests that run `configure_logging` (the CLI does): the session's root handlers and level put back
    afterwards, and MLflow's variables it sets restored by monkeypatch."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    for name in MLFLOW_QUIET_ENV:
        monkeypatch.delenv(name, raising=False)
    yield
    for handler in root.handlers:
        handler.close()
    root.handlers[:], root.level = handlers, level
