"""`lakehouse`: the `up` command (what `make up` runs), its order and its output for a person."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lakehouse.settings import REPO_ROOT, Settings
from orchestration import cli
from orchestration.stack import Stack, StackError
from tests.support import free_port

UP_HELP = """\
usage: lakehouse up [-h] [--wait WAIT]

What `make up` runs: start Kafka, MLflow, PostgreSQL and the API (the first
run simulates the default market and runs the pipeline before the API starts),
wait until the API's models and features are loaded, start the streaming
driver in the background (`lakehouse stack status` shows when it is healthy),
then print the addresses, the API key file and a request to paste. Does only
what is missing: a second run returns in seconds.

options:
  -h, --help   show this help message and exit
  --wait WAIT  seconds to wait for the API's models and features (default 180)
"""


def _where(state: str, cli_path: str = ".venv/bin/lakehouse") -> list[str]:
    """The block `make up` ends with, for a state folder and the default addresses."""
    return [
        "",
        "  API              http://127.0.0.1:8000/docs",
        f"  API key          {state}/api_key.txt",
        "  try              curl -s -X POST http://127.0.0.1:8000/v1/prices "
        f"""-H "X-API-Key: $(cat {state}/api_key.txt)" \\""",
        """                        -H 'content-type: application/json' -d '{"sku": "SKU-001362"}'""",
        "  MLflow UI        http://127.0.0.1:5000",
        "  Kafka broker     127.0.0.1:9092",
        "  PostgreSQL       psql -h 127.0.0.1 -p 5432 -U lakehouse lakehouse  "
        "(password: $PGPASSWORD, by default lakehouse)",
        "  streaming        starting (a Spark driver, about half a minute): `make status` shows when it is healthy",
        f"  tables           {cli_path} tables",
        f'  SQL              {cli_path} sql "SELECT * FROM gold.prices LIMIT 5"  (make sql: a shell; the endpoint '
        "starts on demand)",
        "  status, stop     make status, make down",
    ]


def _seconds_zeroed(text: str) -> list[str]:
    """The lines with every stage's seconds (a 6-wide field) as 0.0."""
    return [re.sub(r"[ \d]{4}\.\d s", "   0.0 s", line) for line in text.splitlines()]


def test_up_help(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as exited:
        cli.main(["up", "--help"])
    assert (exited.value.code, capsys.readouterr().out) == (0, UP_HELP)


def test_the_warm_path_imports_neither_spark_nor_the_jobs_nor_the_api():
    # Every module `make up` imports before it starts a service is time on the 2 cores the services start on.
    loaded = subprocess.run([sys.executable, "-c", (
        "import sys; from orchestration.cli import build_parser; build_parser().parse_args(['up']); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pyspark', 'pandas', 'numpy', 'fastapi', "
        "'mlflow', 'great_expectations', 'httpx', 'serving', 'spark_jobs', 'training', 'simulator'}))")],
        capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert loaded.stdout == "[]\n"


@pytest.fixture
def fake_stack(monkeypatch, tmp_path, restored_logging):
    """`lakehouse up` on a state folder of its own with the services faked: the calls, in order."""
    own = Settings(state_dir=tmp_path / "state", kafka_bootstrap_servers="127.0.0.1:9092",
                   mlflow_tracking_uri="http://127.0.0.1:5000", api_host="127.0.0.1", api_port=8000, pg_port=5432)
    own.state_dir.mkdir()
    (own.state_dir / "api_key.txt").write_text("lh_secret\n")
    calls = []

    class FakeStack:
        def __init__(self, settings, only=None):
            assert settings is own
            self.only = only

        def up(self):
            calls.append(("up", self.only))

        def start(self):
            calls.append(("start", self.only))

        def wait_healthy(self):
            calls.append(("wait_healthy", self.only))

    monkeypatch.setattr(cli, "get_settings", lambda: own)
    monkeypatch.setattr(cli, "Stack", FakeStack)
    monkeypatch.setattr(cli, "_wait_api_ready", lambda settings, timeout_s: calls.append(("ready", timeout_s)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(tmp_path / ".venv" / "bin" / "lakehouse"), "up"])
    return own, calls


def test_a_warm_up_starts_mlflow_and_the_api_first_kafka_next_and_the_streaming_driver_last(fake_stack, capsys):
    own, calls = fake_stack
    own.bootstrap_marker.write_text("{}")

    assert cli.main(["up"]) == 0
    assert calls == [("start", ["mlflow", "serving", "postgres"]), ("wait_healthy", ["mlflow"]), ("up", ["kafka"]),
                     ("wait_healthy", ["serving", "postgres"]), ("up", ["serving"]), ("ready", 180.0),
                     ("start", ["streaming"])]
    out = capsys.readouterr()
    assert _seconds_zeroed(out.err) == ["      services      0.0 s  mlflow, serving, kafka, postgres healthy",
                                        "      api           0.0 s  ready: models and features loaded"]
    assert out.out.splitlines() == _where(str(own.state_dir))
    logged = [json.loads(line) for line in (own.logs_dir / "up.log").read_text().splitlines()]
    assert [(entry["msg"], entry.get("summary")) for entry in logged] == [
        ("services started", None), ("services done", "mlflow, serving, kafka, postgres healthy"),
        ("api started", None), ("api done", "ready: models and features loaded")]


def test_the_first_up_builds_the_lake_before_it_starts_the_api(fake_stack, monkeypatch, capsys):
    own, calls = fake_stack
    monkeypatch.setattr(cli, "_bootstrap", lambda settings: calls.append(("bootstrap", settings)) or True)

    assert cli.main(["up", "--wait", "30"]) == 0
    assert calls == [("up", ["kafka", "mlflow", "postgres"]), ("bootstrap", own), ("up", ["serving"]), ("ready", 30.0),
                     ("start", ["streaming"])]
    assert _seconds_zeroed(capsys.readouterr().err)[0] == "      services      0.0 s  kafka, mlflow, postgres healthy"


def test_a_service_that_does_not_start_fails_up_with_its_log_named(fake_stack, monkeypatch, capsys):
    own, calls = fake_stack
    own.bootstrap_marker.write_text("{}")

    def broken(settings, timeout_s):
        raise StackError("the API at http://127.0.0.1:8000/readyz is not ready after 180 s "
                         "(['model pricing@champion']); read .state/logs/serving.log")

    monkeypatch.setattr(cli, "_wait_api_ready", broken)
    assert cli.main(["up"]) == 1
    assert calls[-2:] == [("wait_healthy", ["serving", "postgres"]), ("up", ["serving"])]  # no streaming driver
    out = capsys.readouterr()
    assert out.out == ""
    assert _seconds_zeroed(out.err) == [
        "      services      0.0 s  mlflow, serving, kafka, postgres healthy",
        "      api           0.0 s  failed: the API at http://127.0.0.1:8000/readyz is not ready after 180 s "
        "(['model pricing@champion']); read .state/logs/serving.log (log: state/logs/up.log)"]


@pytest.mark.integration
def test_a_warm_make_up_is_a_few_lines_and_does_not_wait_for_the_streaming_driver(
        simulated_lake, stack, settings, tmp_path):
    """The real `lakehouse up` on a built lake (a copy of the session's simulated one, its models in a copy of the
    session's MLflow registry) with services of its own: what a second `make up` prints."""
    lake, _ = simulated_lake
    own = Settings(state_dir=tmp_path / "state", jars_dir=settings.jars_dir,
                   kafka_bootstrap_servers=f"127.0.0.1:{free_port()}", kafka_controller_port=free_port(),
                   mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}", api_port=free_port(), pg_port=free_port(),
                   mlflow_artifacts_destination=str(settings.state_dir / "mlflow" / "artifacts"))
    shutil.copytree(lake.lake_root, own.lake_root)
    (own.state_dir / "mlflow").mkdir()
    with sqlite3.connect(settings.state_dir / "mlflow" / "mlflow.db") as registry, \
            sqlite3.connect(own.state_dir / "mlflow" / "mlflow.db") as copy:
        registry.backup(copy)
    own.bootstrap_marker.write_text("{}")
    env = {**os.environ, "LAKEHOUSE_STATE_DIR": str(own.state_dir), "LAKEHOUSE_JARS_DIR": str(own.jars_dir),
           "KAFKA_BOOTSTRAP_SERVERS": own.kafka_bootstrap_servers,
           "LAKEHOUSE_KAFKA_CONTROLLER_PORT": str(own.kafka_controller_port),
           "MLFLOW_TRACKING_URI": own.mlflow_tracking_uri, "LAKEHOUSE_API_PORT": str(own.api_port),
           "PGPORT": str(own.pg_port),
           "LAKEHOUSE_MLFLOW_ARTIFACTS_DESTINATION": own.mlflow_artifacts_destination}
    env.pop("LAKEHOUSE_LOG_FORMAT", None)
    lakehouse = str(Path(sys.executable).parent / "lakehouse")
    try:
        started = time.monotonic()
        ran = subprocess.run([lakehouse, "up"], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
        seconds = time.monotonic() - started
        streaming = {row["service"]: row for row in Stack(own).status()}["streaming"]
    finally:
        subprocess.run([lakehouse, "stack", "down"], env=env, cwd=REPO_ROOT, capture_output=True, timeout=300)

    assert ran.returncode == 0, ran.stderr
    assert _seconds_zeroed(ran.stderr) == ["      services      0.0 s  mlflow, serving, kafka, postgres healthy",
                                           "      api           0.0 s  ready: models and features loaded"]
    lines = ran.stdout.splitlines()
    assert len(lines) + 2 <= 40
    assert lines[1:3] == [f"  API              http://127.0.0.1:{own.api_port}/docs",
                          f"  API key          {own.state_dir}/api_key.txt"]
    assert streaming["pid"] is not None  # started, and not waited for
    print(f"warm lakehouse up: {seconds:.1f} s, {len(lines) + 2} lines")
